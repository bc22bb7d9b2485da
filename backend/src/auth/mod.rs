//! Accounts and credentials: registration, sign-in with rotating refresh tokens, API keys, and
//! the extractors through which a route states who may call it.

pub mod api_keys;
pub mod extractors;
pub mod handlers;
pub mod jwt;
pub mod key_cache;
pub mod password;
pub mod server_keys;
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

/// What a key may do. A personal API key holds some of [`Scope::PERSONAL`]; a server key some of
/// [`Scope::SERVER`]. A signed-in session may do everything its role allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Scope {
    /// Read balance, ledger, holds and usage, and check whether a spend would pass.
    #[serde(rename = "credits:read")]
    CreditsRead,
    /// Spend credits and place, capture and release holds.
    #[serde(rename = "credits:spend")]
    CreditsSpend,
    /// Grant credits to a customer (server keys).
    #[serde(rename = "credits:grant")]
    CreditsGrant,
    /// Create and update customers (server keys).
    #[serde(rename = "customers:write")]
    CustomersWrite,
    /// Read and list customers (server keys).
    #[serde(rename = "customers:read")]
    CustomersRead,
    /// Open checkout and hosted-portal sessions for a customer (server keys).
    #[serde(rename = "billing:write")]
    BillingWrite,
    /// Read the event log (server keys).
    #[serde(rename = "events:read")]
    EventsRead,
    /// Manage webhook endpoints (server keys).
    #[serde(rename = "webhooks:write")]
    WebhooksWrite,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::CreditsRead,
        Scope::CreditsSpend,
        Scope::CreditsGrant,
        Scope::CustomersWrite,
        Scope::CustomersRead,
        Scope::BillingWrite,
        Scope::EventsRead,
        Scope::WebhooksWrite,
    ];
    /// What a personal API key may hold: its owner's own wallet.
    pub const PERSONAL: [Scope; 2] = [Scope::CreditsRead, Scope::CreditsSpend];
    /// What a server key may hold.
    pub const SERVER: [Scope; 8] = Scope::ALL;

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::CreditsRead => "credits:read",
            Scope::CreditsSpend => "credits:spend",
            Scope::CreditsGrant => "credits:grant",
            Scope::CustomersWrite => "customers:write",
            Scope::CustomersRead => "customers:read",
            Scope::BillingWrite => "billing:write",
            Scope::EventsRead => "events:read",
            Scope::WebhooksWrite => "webhooks:write",
        }
    }

    pub fn parse(value: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Parses a stored comma-separated list.
    pub fn parse_list(stored: &str) -> Vec<Scope> {
        stored.split(',').filter_map(Scope::parse).collect()
    }

    /// Parses the scopes a request asks a new key to hold, out of `allowed`.
    pub fn parse_requested(raw: &[String], allowed: &[Scope]) -> Result<Vec<Scope>, crate::error::FieldError> {
        let names = allowed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        let mut scopes = Vec::new();
        for name in raw {
            match Scope::parse(name).filter(|s| allowed.contains(s)) {
                Some(scope) if !scopes.contains(&scope) => scopes.push(scope),
                Some(_) => {}
                None => {
                    return Err(crate::error::FieldError {
                        field: "scopes".into(),
                        code: "unknown_scope".into(),
                        message: format!("`{name}` is not a scope this key can hold; use {names}"),
                    });
                }
            }
        }
        if scopes.is_empty() {
            return Err(crate::error::FieldError {
                field: "scopes".into(),
                code: "required".into(),
                message: format!("give at least one scope: {names}"),
            });
        }
        Ok(scopes)
    }

    /// The stored form of a list.
    pub fn join(scopes: &[Scope]) -> String {
        scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
    }
}

/// A key's name and scopes, checked: the name 1 to 100 characters, the scopes some of `allowed`.
/// Every problem is named at once (422 `validation_failed`).
pub fn parse_key_request(
    name: &str,
    scopes: &[String],
    allowed: &[Scope],
) -> Result<(String, Vec<Scope>), crate::error::ApiError> {
    let mut errors = Vec::new();
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        errors.push(crate::error::FieldError {
            field: "name".into(),
            code: "length".into(),
            message: "name must be 1 to 100 characters".into(),
        });
    }
    let scopes = Scope::parse_requested(scopes, allowed).map_err(|e| errors.push(e)).ok();
    match scopes {
        Some(scopes) if errors.is_empty() => Ok((name, scopes)),
        _ => Err(crate::error::ApiError::validation(errors)),
    }
}

/// A new key's secret: what the caller is shown once, what is kept in clear to recognise it, and
/// the hash it is found by.
pub struct NewSecret {
    pub secret: String,
    pub prefix: String,
    pub hash: String,
}

impl NewSecret {
    /// 256 random bits after `prefix`, redrawn while they would start with `avoid` (so that a
    /// personal key never looks like a server key).
    pub fn mint(prefix: &str, avoid: Option<&str>, shown: usize) -> Self {
        let secret = loop {
            let token = service::random_token();
            if avoid.is_none_or(|avoid| !token.starts_with(avoid)) {
                break format!("{prefix}{token}");
            }
        };
        Self { prefix: secret.chars().take(shown).collect(), hash: service::hash_secret(&secret), secret }
    }
}
