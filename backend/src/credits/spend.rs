//! Spending: what a spend request asks, priced by the rate card, and the spend itself, written
//! through the ledger's one writer (`batch::Ledger`, then the core and the store).

use sea_orm::{ConnectionTrait, EntityTrait};
use uuid::Uuid;

use super::{
    Outcome,
    batch::Ledger,
    core::{Answer, Command, Op, TransferDetails, Verdict},
    dto::SpendResponse,
    error::{CreditsError, invalid},
};
use crate::{domain::Credits, entities::features, gateway::pricing::TokenUsage, idempotency::IdempotentRequest};

/// What to charge: an explicit amount, a feature priced by the rate card, or the tokens of an
/// LLM call priced by the model's rates.
#[derive(Debug, Clone)]
pub enum Charge {
    Amount(Credits),
    Feature { key: String, quantity: i64 },
    Tokens { model: String, usage: TokenUsage },
}

/// A priced charge.
#[derive(Debug, Clone)]
pub struct Priced {
    pub amount: Credits,
    pub feature: Option<String>,
    pub quantity: Option<i64>,
    /// A token-priced charge's model and counts, kept as the transfer's `metadata.llm`.
    pub llm: Option<serde_json::Value>,
}

impl Priced {
    /// The details of the transfer (or hold) that charges it.
    pub fn details(self, description: Option<String>, metadata: Option<serde_json::Value>) -> TransferDetails {
        let metadata = match (metadata, self.llm) {
            (metadata, None) => metadata,
            (Some(serde_json::Value::Object(mut map)), Some(llm)) => {
                map.insert("llm".to_owned(), llm);
                Some(serde_json::Value::Object(map))
            }
            (_, Some(llm)) => Some(serde_json::json!({ "llm": llm })),
        };
        TransferDetails { description, feature: self.feature, quantity: self.quantity, metadata, ..Default::default() }
    }
}

/// Checks an amount a client sent.
pub fn parse_amount(field: &'static str, value: i64, allow_zero: bool) -> Result<Credits, CreditsError> {
    if value < 0 || (value == 0 && !allow_zero) {
        return Err(invalid(
            field,
            if allow_zero { "must not be negative" } else { "must be a positive whole number" },
        ));
    }
    if value > Credits::MAX_PER_REQUEST {
        return Err(invalid(field, format!("must be at most {}", Credits::MAX_PER_REQUEST)));
    }
    Credits::new(value).map_err(|_| invalid(field, "must not be negative"))
}

/// Builds a charge from the request's `amount` or `feature` + `quantity`.
pub fn parse_charge(
    amount: Option<i64>,
    feature: Option<String>,
    quantity: Option<i64>,
) -> Result<Charge, CreditsError> {
    match (amount, feature) {
        (Some(_), Some(_)) => Err(invalid("amount", "and feature cannot both be given: send one or the other")),
        (None, None) => {
            Err(invalid("amount", "is required, or send feature (and quantity) to be priced by the rate card"))
        }
        (Some(amount), None) => {
            if quantity.is_some() {
                return Err(invalid("quantity", "goes with feature, not with amount"));
            }
            Ok(Charge::Amount(parse_amount("amount", amount, false)?))
        }
        (None, Some(key)) => {
            let quantity = quantity.unwrap_or(1);
            if !(1..=1_000_000_000).contains(&quantity) {
                return Err(invalid("quantity", "must be between 1 and 1000000000"));
            }
            Ok(Charge::Feature { key, quantity })
        }
    }
}

/// Builds a spend's charge: `amount`, `feature` (and `quantity`), or `model` and `usage`.
pub fn parse_spend_charge(
    amount: Option<i64>,
    feature: Option<String>,
    quantity: Option<i64>,
    model: Option<String>,
    usage: Option<TokenUsage>,
    metadata: &Option<serde_json::Value>,
) -> Result<Charge, CreditsError> {
    match (model, usage) {
        (None, None) => parse_charge(amount, feature, quantity),
        (Some(_), None) => {
            Err(invalid("usage", "is required with model: {input_tokens, output_tokens, cached_input_tokens}"))
        }
        (None, Some(_)) => Err(invalid("model", "is required with usage: a model id from GET /api/v1/models")),
        (Some(model), Some(usage)) => {
            if amount.is_some() || feature.is_some() || quantity.is_some() {
                return Err(invalid(
                    "model",
                    "is priced by its tokens: send model and usage without amount, feature or quantity",
                ));
            }
            if super::holds::carries_llm(metadata.as_ref()) {
                return Err(invalid("metadata", "must not hold `llm`: Tollgate records the model and tokens there"));
            }
            let limit = 1_000_000_000_000u64;
            if usage.input_tokens > limit || usage.output_tokens > limit || usage.cached_input_tokens > limit {
                return Err(invalid("usage", "token counts must be at most 1000000000000"));
            }
            Ok(Charge::Tokens { model, usage })
        }
    }
}

/// Checks a description and metadata the client sent.
pub fn check_details(description: &Option<String>, metadata: &Option<serde_json::Value>) -> Result<(), CreditsError> {
    if description.as_ref().is_some_and(|d| d.chars().count() > 500) {
        return Err(invalid("description", "must be at most 500 characters"));
    }
    if description.as_ref().is_some_and(|d| d.contains('\0')) {
        return Err(invalid("description", "must not contain NUL characters"));
    }
    if let Some(metadata) = metadata {
        if !metadata.is_object() {
            return Err(invalid("metadata", "must be a JSON object"));
        }
        if metadata.to_string().len() > 4096 {
            return Err(invalid("metadata", "must be at most 4 KiB"));
        }
    }
    Ok(())
}

/// Prices a charge with the rate card.
pub async fn price(db: &impl ConnectionTrait, charge: &Charge) -> Result<Priced, CreditsError> {
    match charge {
        Charge::Amount(amount) => Ok(Priced { amount: *amount, feature: None, quantity: None, llm: None }),
        Charge::Tokens { model, usage } => {
            let found = crate::gateway::models::find_active(db, model)
                .await
                .map_err(|_| CreditsError::UnknownModel(model.clone()))?;
            let amount = found
                .prices()
                .charge(usage)
                .map_err(|_| invalid("usage", "prices to more credits than one request may move"))?;
            let llm = serde_json::json!({
                "model": found.id,
                "input_tokens": usage.input_tokens,
                "cached_input_tokens": usage.cached_input_tokens,
                "output_tokens": usage.output_tokens,
            });
            Ok(Priced {
                amount,
                feature: Some(found.feature()),
                quantity: i64::try_from(usage.total()).ok(),
                llm: Some(llm),
            })
        }
        Charge::Feature { key, quantity } => {
            let feature = features::Entity::find_by_id(key.clone())
                .one(db)
                .await?
                .ok_or_else(|| CreditsError::UnknownFeature(key.clone()))?;
            if !feature.active {
                return Err(CreditsError::FeatureInactive(key.clone()));
            }
            let unit = Credits::new(feature.credits_per_unit)
                .map_err(|_| invalid("feature", "has a negative price on the rate card"))?;
            let too_large = || invalid("quantity", "prices to more credits than one request may move");
            let amount = unit.checked_mul(*quantity).map_err(|_| too_large())?;
            if amount.get() > Credits::MAX_PER_REQUEST {
                return Err(too_large());
            }
            Ok(Priced { amount, feature: Some(key.clone()), quantity: Some(*quantity), llm: None })
        }
    }
}

/// A spend request, parsed.
#[derive(Debug, Clone)]
pub struct SpendCommand {
    pub charge: Charge,
    pub description: Option<String>,
    pub metadata: Option<serde_json::Value>,
}

/// A spend priced by the rate card, ready to post.
#[derive(Debug, Clone)]
pub struct PricedSpend {
    pub amount: Credits,
    pub details: TransferDetails,
}

impl PricedSpend {
    pub async fn of(db: &impl ConnectionTrait, command: SpendCommand) -> Result<Self, CreditsError> {
        let priced = price(db, &command.charge).await?;
        let amount = priced.amount;
        Ok(Self { amount, details: priced.details(command.description, command.metadata) })
    }

    /// The ledger command that spends it from the user's wallet.
    pub fn command(&self, user_id: Uuid, request: &IdempotentRequest) -> Command {
        Command {
            user_id,
            key: Some(request.clone()),
            op: Op::Spend { amount: self.amount, details: self.details.clone() },
        }
    }
}

/// A spend's answer, or why there is none.
pub type SpendResult = Result<Outcome<SpendResponse>, CreditsError>;

/// Spends credits from the user's wallet, in the next batch.
pub async fn spend(ledger: &Ledger, user_id: Uuid, request: &IdempotentRequest, command: SpendCommand) -> SpendResult {
    let spend = PricedSpend::of(ledger.db(), command).await?;
    spent(ledger.submit(spend.command(user_id, request)).await)
}

/// A spend command's verdict as the API answers it.
pub fn spent(verdict: Verdict) -> SpendResult {
    match verdict? {
        Answer::Spent(response) => Ok(Outcome::Fresh(response)),
        Answer::Replayed(stored) => Ok(Outcome::Replayed(stored)),
        other => Err(CreditsError::invariant(format!("a spend was answered {other:?}"))),
    }
}
