//! What every handler can reach: the pool, the settings and the keys built from them.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::{
    auth::{jwt::JwtKeys, password::PasswordHasher},
    config::Settings,
};

/// Shared, cheaply cloned application state.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    pub jwt: JwtKeys,
    pub passwords: PasswordHasher,
}

impl AppState {
    pub fn new(db: DatabaseConnection, settings: Settings) -> anyhow::Result<Self> {
        let jwt = JwtKeys::new(settings.jwt_secret.expose(), settings.access_token_ttl);
        let passwords = PasswordHasher::new(settings.password_hashing)?;
        Ok(Self {
            db,
            settings: Arc::new(settings),
            jwt,
            passwords,
        })
    }
}
