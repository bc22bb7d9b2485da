//! The ledger's vocabulary: why credits moved, where a lot came from, a hold's life, and the
//! system accounts every transfer pairs a wallet with.
//!
//! Each enum is stored as its `as_str` (the entities' columns are text, constrained to these
//! values by migration `m20261203_000301_status_checks`), serialised as the same string, and
//! documented in the OpenAPI spec as a string enum.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The system accounts, seeded by the ledger migration with these fixed ids.
pub mod system {
    use uuid::Uuid;

    pub const PURCHASES: Uuid = Uuid::from_u128(0x00000000_0000_7000_8000_000000000001);
    pub const SUBSCRIPTIONS: Uuid = Uuid::from_u128(0x00000000_0000_7000_8000_000000000002);
    pub const GRANTS: Uuid = Uuid::from_u128(0x00000000_0000_7000_8000_000000000003);
    pub const PROMOTIONS: Uuid = Uuid::from_u128(0x00000000_0000_7000_8000_000000000004);
    pub const USAGE: Uuid = Uuid::from_u128(0x00000000_0000_7000_8000_000000000005);
    pub const EXPIRY: Uuid = Uuid::from_u128(0x00000000_0000_7000_8000_000000000006);
    pub const CLAWBACK: Uuid = Uuid::from_u128(0x00000000_0000_7000_8000_000000000007);
    pub const DISPUTES: Uuid = Uuid::from_u128(0x00000000_0000_7000_8000_000000000008);
    pub const WRITEOFF: Uuid = Uuid::from_u128(0x00000000_0000_7000_8000_000000000009);
}

/// Why credits moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    Purchase,
    Subscription,
    Grant,
    Promotion,
    Spend,
    Expiry,
    Clawback,
    DisputeFreeze,
    DisputeRelease,
    WriteOff,
}

impl TransferKind {
    pub const ALL: [TransferKind; 10] = [
        Self::Purchase,
        Self::Subscription,
        Self::Grant,
        Self::Promotion,
        Self::Spend,
        Self::Expiry,
        Self::Clawback,
        Self::DisputeFreeze,
        Self::DisputeRelease,
        Self::WriteOff,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Purchase => "purchase",
            Self::Subscription => "subscription",
            Self::Grant => "grant",
            Self::Promotion => "promotion",
            Self::Spend => "spend",
            Self::Expiry => "expiry",
            Self::Clawback => "clawback",
            Self::DisputeFreeze => "dispute_freeze",
            Self::DisputeRelease => "dispute_release",
            Self::WriteOff => "write_off",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == value)
    }
}

/// Where a lot's credits came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LotSource {
    Purchase,
    Subscription,
    Grant,
    Promotion,
}

impl LotSource {
    pub const ALL: [LotSource; 4] = [Self::Purchase, Self::Subscription, Self::Grant, Self::Promotion];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Purchase => "purchase",
            Self::Subscription => "subscription",
            Self::Grant => "grant",
            Self::Promotion => "promotion",
        }
    }

    /// Lower is spent first: free credits before those a subscription period brings, before
    /// paid packs, which never expire.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    pub fn default_priority(self) -> i32 {
        match self {
            Self::Promotion => 10,
            Self::Grant => 20,
            Self::Subscription => 50,
            Self::Purchase => 100,
        }
    }
}

/// A hold's life: open until captured, released, or past its time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    Open,
    Captured,
    Released,
    Expired,
}

impl HoldStatus {
    pub const ALL: [HoldStatus; 4] = [Self::Open, Self::Captured, Self::Released, Self::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Captured => "captured",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }

    pub fn parse(value: &str) -> Self {
        match value {
            "captured" => Self::Captured,
            "released" => Self::Released,
            "expired" => Self::Expired,
            _ => Self::Open,
        }
    }
}

/// What a wallet can spend: its balance less open holds, or nothing while it owes a debt.
pub fn available(wallet: &crate::entities::accounts::Model) -> i64 {
    if wallet.debt > 0 { 0 } else { wallet.balance.saturating_sub(wallet.held).max(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API shows each value as the string the database stores.
    fn serialises_as_stored<T: Serialize + Copy>(values: &[T], as_str: fn(T) -> &'static str) {
        let mut seen = std::collections::HashSet::new();
        for &value in values {
            assert_eq!(serde_json::to_value(value).unwrap(), as_str(value));
            assert!(seen.insert(as_str(value)), "{} twice", as_str(value));
        }
    }

    #[test]
    fn every_value_round_trips_through_its_string() {
        serialises_as_stored(&TransferKind::ALL, TransferKind::as_str);
        serialises_as_stored(&LotSource::ALL, LotSource::as_str);
        serialises_as_stored(&HoldStatus::ALL, HoldStatus::as_str);
        assert!(TransferKind::ALL.iter().all(|&k| TransferKind::parse(k.as_str()) == Some(k)));
        assert!(LotSource::ALL.iter().all(|&s| LotSource::parse(s.as_str()) == Some(s)));
        assert!(HoldStatus::ALL.iter().all(|&s| HoldStatus::parse(s.as_str()) == s));
    }
}
