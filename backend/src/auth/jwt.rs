//! Short-lived HS256 access tokens.
//!
//! Their life is measured by the application's clock, like every other time Tollgate decides
//! by: `iat` and `exp` are stamped from it, and `exp` is checked against it here rather than by
//! `jsonwebtoken`, which could only read the system's. `jsonwebtoken` still checks the
//! signature, the issuer, the audience and that `exp` is there.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Role;
use crate::clock::Clock;

pub const ISSUER: &str = "tollgate";
pub const AUDIENCE: &str = "tollgate-api";
/// Seconds a token is still taken after its `exp`, for clock skew between replicas.
pub const LEEWAY_SECONDS: u64 = 5;

/// The claims Tollgate signs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub exp: u64,
    pub iat: u64,
    pub iss: String,
    pub aud: String,
    pub jti: Uuid,
    pub role: Role,
}

/// Signs and checks access tokens.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    clock: Clock,
}

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    Expired,
    Invalid,
}

impl JwtKeys {
    /// Keys for `secret`; tokens live `ttl` by `clock`.
    pub fn new(secret: &str, ttl: Duration, clock: Clock) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // `exp` is judged in `verify`, by the application's clock.
        validation.validate_exp = false;
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            ttl,
            clock,
        }
    }

    /// The clock's time in whole seconds, as JWTs count it.
    fn now(&self) -> u64 {
        u64::try_from(self.clock.now().timestamp()).unwrap_or_default()
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(&self, user_id: Uuid, role: Role) -> anyhow::Result<String> {
        let now = self.now();
        let claims = Claims {
            sub: user_id,
            iat: now,
            exp: now + self.ttl.as_secs(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            jti: Uuid::now_v7(),
            role,
        };
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?)
    }

    /// The claims of a token this server signed and that has not expired.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        if claims.exp.saturating_add(LEEWAY_SECONDS) < self.now() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-long-enough-for-hs256-0123456789";

    #[test]
    fn a_token_expires_when_the_clock_passes_its_ttl() {
        let clock = Clock::adjustable();
        let keys = JwtKeys::new(SECRET, Duration::from_secs(900), clock.clone());
        let user = Uuid::now_v7();
        let token = keys.issue(user, Role::User).expect("issue");
        assert_eq!(keys.verify(&token).expect("fresh").sub, user);
        // Within the TTL and the leeway, by the application's clock: still good.
        clock.advance(chrono::Duration::seconds(900 + LEEWAY_SECONDS as i64 - 1));
        assert!(keys.verify(&token).is_ok());
        clock.advance(chrono::Duration::seconds(2));
        assert_eq!(keys.verify(&token).map(|c| c.sub), Err(TokenError::Expired));
        // A token issued now is good again.
        assert!(keys.verify(&keys.issue(user, Role::User).expect("issue")).is_ok());
    }

    #[test]
    fn a_token_of_another_key_or_audience_is_invalid() {
        let keys = JwtKeys::new(SECRET, Duration::from_secs(900), Clock::system());
        let other =
            JwtKeys::new("another-secret-long-enough-for-hs256-0123456789", Duration::from_secs(900), Clock::system());
        let token = other.issue(Uuid::now_v7(), Role::User).expect("issue");
        assert_eq!(keys.verify(&token).map(|c| c.sub), Err(TokenError::Invalid));
        let claims = Claims {
            sub: Uuid::now_v7(),
            exp: keys.now() + 60,
            iat: keys.now(),
            iss: ISSUER.to_owned(),
            aud: "someone-else".to_owned(),
            jti: Uuid::now_v7(),
            role: Role::User,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).expect("encode");
        assert_eq!(keys.verify(&token).map(|c| c.sub), Err(TokenError::Invalid));
    }
}
