//! The live stream (#18): server-sent events of one wallet's changes, `GET /credits/stream` for
//! the signed-in caller, `GET /customers/{external_id}/stream` for the product's backend and
//! `GET /hosted/stream` for a customer's hosted pages.
//! Each event comes once, in order, with its `id:`, so a client that reconnects with
//! `Last-Event-ID` resumes from the outbox without a gap. One hub per replica feeds every stream
//! (see `hub`), so a spend committed on any replica reaches the streams held on all of them.

pub mod handlers;
pub mod hub;
pub mod stream;

pub use hub::Hub;
