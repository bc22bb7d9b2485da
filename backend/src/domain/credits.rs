use std::fmt;

use serde::{Deserialize, Serialize};

/// A non-negative whole number of credits. Arithmetic is checked: an overflow or a result below
/// zero is an error, never a wrap or a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct Credits(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditsError {
    #[error("a credit amount cannot be negative")]
    Negative,
    #[error("the credit amount is too large")]
    Overflow,
}

impl Credits {
    pub const ZERO: Credits = Credits(0);
    /// The largest amount a single request may move: far beyond any real purchase, far below
    /// where sums over many transfers could overflow an i64.
    pub const MAX_PER_REQUEST: i64 = 1_000_000_000_000;

    pub fn new(value: i64) -> Result<Self, CreditsError> {
        if value < 0 { Err(CreditsError::Negative) } else { Ok(Self(value)) }
    }

    pub fn get(self) -> i64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Credits) -> Result<Credits, CreditsError> {
        self.0.checked_add(other.0).map(Credits).ok_or(CreditsError::Overflow)
    }

    pub fn checked_sub(self, other: Credits) -> Result<Credits, CreditsError> {
        match self.0.checked_sub(other.0) {
            Some(v) if v >= 0 => Ok(Credits(v)),
            Some(_) => Err(CreditsError::Negative),
            None => Err(CreditsError::Overflow),
        }
    }

    pub fn checked_mul(self, factor: i64) -> Result<Credits, CreditsError> {
        if factor < 0 {
            return Err(CreditsError::Negative);
        }
        self.0.checked_mul(factor).map(Credits).ok_or(CreditsError::Overflow)
    }

    pub fn min(self, other: Credits) -> Credits {
        Credits(self.0.min(other.0))
    }
}

impl<'de> Deserialize<'de> for Credits {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(deserializer)?;
        Credits::new(value).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Credits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_negative_and_checks_arithmetic() {
        assert_eq!(Credits::new(-1), Err(CreditsError::Negative));
        let five = Credits::new(5).unwrap();
        let three = Credits::new(3).unwrap();
        assert_eq!(five.checked_sub(three).unwrap().get(), 2);
        assert_eq!(three.checked_sub(five), Err(CreditsError::Negative));
        assert_eq!(Credits::new(i64::MAX).unwrap().checked_add(five), Err(CreditsError::Overflow));
        assert_eq!(five.checked_mul(i64::MAX), Err(CreditsError::Overflow));
        assert!(serde_json::from_str::<Credits>("-4").is_err());
        assert!(serde_json::from_str::<Credits>("1.5").is_err());
    }
}
