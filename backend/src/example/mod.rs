//! The seed's example AI feature, made real and deterministic: an extractive summary priced by
//! the rate card, paid for with a hold that is captured at the actual cost.

pub mod handlers;
pub mod summarize;
