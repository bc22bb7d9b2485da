//! What an LLM call costs: `ceil((input·p_in + cached·p_cached + output·p_out) / 1,000,000)`
//! credits, with prices in credits per million tokens. Exact, checked integer arithmetic in
//! `u128`, then checked into `Credits`: a sum too large for either is refused, never wrapped.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::Credits;

/// A model's prices, in credits per million tokens; never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prices {
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
}

/// Tokens one call used. `input_tokens` are the uncached input tokens; `cached_input_tokens`
/// those the provider served from its prompt cache (priced apart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenUsage {
    /// Input (prompt) tokens not served from the provider's cache.
    #[schema(minimum = 0, example = 1200)]
    pub input_tokens: u64,
    /// Output (completion) tokens, reasoning tokens included.
    #[schema(minimum = 0, example = 350)]
    pub output_tokens: u64,
    /// Input tokens served from the provider's prompt cache.
    #[serde(default)]
    #[schema(minimum = 0, example = 0)]
    pub cached_input_tokens: u64,
}

impl TokenUsage {
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens).saturating_add(self.cached_input_tokens)
    }
}

/// Why a charge cannot be computed: it is more credits than a ledger amount can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the charge is more credits than one request may move")]
pub struct ChargeTooLarge;

impl Prices {
    /// The exact charge, rounded up to a whole credit.
    pub fn charge(&self, usage: &TokenUsage) -> Result<Credits, ChargeTooLarge> {
        let term = |tokens: u64, price: u64| u128::from(tokens).checked_mul(u128::from(price));
        let micro = term(usage.input_tokens, self.input)
            .zip(term(usage.cached_input_tokens, self.cached_input))
            .and_then(|(a, b)| a.checked_add(b))
            .zip(term(usage.output_tokens, self.output))
            .and_then(|(a, b)| a.checked_add(b))
            .ok_or(ChargeTooLarge)?;
        let credits = micro.div_ceil(1_000_000);
        let credits = i64::try_from(credits).map_err(|_| ChargeTooLarge)?;
        if credits > Credits::MAX_PER_REQUEST {
            return Err(ChargeTooLarge);
        }
        Credits::new(credits).map_err(|_| ChargeTooLarge)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn usage(input: u64, cached: u64, output: u64) -> TokenUsage {
        TokenUsage { input_tokens: input, cached_input_tokens: cached, output_tokens: output }
    }

    #[test]
    fn rounds_up_to_a_whole_credit() {
        let prices = Prices { input: 150, cached_input: 75, output: 600 };
        // 1000·150 + 0 + 500·600 = 450,000 micro-credits: 1 credit.
        assert_eq!(prices.charge(&usage(1000, 0, 500)).unwrap().get(), 1);
        // Exactly 2,000,000 micro-credits is 2, not 3.
        assert_eq!(prices.charge(&usage(0, 0, 3334)).unwrap().get(), 3); // 2,000,400
        assert_eq!(Prices { input: 2, cached_input: 0, output: 0 }.charge(&usage(1_000_000, 0, 0)).unwrap().get(), 2);
        assert_eq!(prices.charge(&usage(0, 0, 0)).unwrap().get(), 0);
        // Cached tokens at their own price.
        assert_eq!(prices.charge(&usage(0, 1_000_000, 0)).unwrap().get(), 75);
        // Free models cost nothing, whatever the tokens.
        assert_eq!(Prices { input: 0, cached_input: 0, output: 0 }.charge(&usage(9, 9, 9)).unwrap().get(), 0);
    }

    #[test]
    fn refuses_what_a_ledger_amount_cannot_hold() {
        let prices = Prices { input: u64::MAX, cached_input: u64::MAX, output: u64::MAX };
        assert_eq!(prices.charge(&usage(u64::MAX, u64::MAX, u64::MAX)), Err(ChargeTooLarge));
    }

    proptest! {
        /// The charge is the exact cost rounded up: never less than it, less than one credit over.
        #[test]
        fn charge_is_the_exact_cost_rounded_up(
            pi in 0u64..1_000_000_000, pc in 0u64..1_000_000_000, po in 0u64..1_000_000_000,
            i in 0u64..10_000_000, c in 0u64..10_000_000, o in 0u64..10_000_000,
        ) {
            let prices = Prices { input: pi, cached_input: pc, output: po };
            let exact = u128::from(i) * u128::from(pi) + u128::from(c) * u128::from(pc) + u128::from(o) * u128::from(po);
            match prices.charge(&usage(i, c, o)) {
                Ok(credits) => {
                    let charged = u128::try_from(credits.get()).unwrap() * 1_000_000;
                    prop_assert!(charged >= exact);
                    prop_assert!(charged < exact + 1_000_000);
                }
                Err(ChargeTooLarge) => prop_assert!(exact.div_ceil(1_000_000) > u128::try_from(Credits::MAX_PER_REQUEST).unwrap()),
            }
        }

        /// More tokens never cost less.
        #[test]
        fn charge_is_monotone(pi in 0u64..10_000, po in 0u64..10_000, i in 0u64..1_000_000, o in 0u64..1_000_000, extra in 0u64..1000) {
            let prices = Prices { input: pi, cached_input: 0, output: po };
            let a = prices.charge(&usage(i, 0, o)).unwrap();
            let b = prices.charge(&usage(i + extra, 0, o + extra)).unwrap();
            prop_assert!(b.get() >= a.get());
        }
    }
}
