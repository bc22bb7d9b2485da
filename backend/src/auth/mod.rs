//! Accounts and credentials: registration, sign-in with rotating refresh tokens, API keys, and
//! the extractors through which a route states who may call it.

pub mod api_keys;
pub mod extractors;
pub mod handlers;
pub mod jwt;
pub mod password;
pub mod service;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a user may do across the whole service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Role {
        if value == "admin" { Role::Admin } else { Role::User }
    }
}

/// What an API key may do. A signed-in session may do everything its role allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Scope {
    /// Read balance, ledger, holds and usage.
    #[serde(rename = "credits:read")]
    CreditsRead,
    /// Spend credits and place, capture and release holds.
    #[serde(rename = "credits:spend")]
    CreditsSpend,
}

impl Scope {
    pub const ALL: [Scope; 2] = [Scope::CreditsRead, Scope::CreditsSpend];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::CreditsRead => "credits:read",
            Scope::CreditsSpend => "credits:spend",
        }
    }

    pub fn parse(value: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == value)
    }
}
