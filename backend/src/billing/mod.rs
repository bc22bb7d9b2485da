//! Billing: the catalog, checkout, the customer portal, subscriptions, and fulfilment of paid
//! credits. Without Stripe keys it runs in sandbox mode: the same fulfilment, with local pages
//! standing in for Stripe's hosted checkout and portal.

pub mod dto;
pub mod handlers;
pub mod portal;
pub mod sandbox;
pub mod service;
pub mod stripe;
pub mod webhooks;
