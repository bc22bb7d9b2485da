//! Argon2id hashing on a blocking thread, and verification against a dummy hash for unknown
//! emails so that both failures take about the same time.

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher as _, PasswordVerifier as _},
};

use crate::config::PasswordHashing;

/// Hashes and verifies passwords with the configured cost.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    dummy_hash: String,
}

impl PasswordHasher {
    pub fn new(cost: PasswordHashing) -> anyhow::Result<Self> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| anyhow::anyhow!("invalid Argon2 parameters: {e}"))?;
        let dummy_hash = hash_with(&params, "tollgate-dummy-password-for-timing")?;
        Ok(Self { params, dummy_hash })
    }

    /// Hashes a password to a PHC string, off the async workers.
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || hash_with(&params, &password)).await?
    }

    /// Verifies a password; with no stored hash, verifies against the dummy and returns false.
    pub async fn verify(&self, password: String, stored: Option<String>) -> anyhow::Result<bool> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.clone());
        let params = self.params.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
            argon.verify_password(password.as_bytes(), hash.as_str()).is_ok()
        })
        .await?;
        Ok(known && ok)
    }
}

fn hash_with(params: &Params, password: &str) -> anyhow::Result<String> {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let hash = argon.hash_password(password.as_bytes()).map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    Ok(hash.to_string())
}
