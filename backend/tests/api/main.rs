#![recursion_limit = "256"]
#![expect(clippy::unwrap_used, reason = "a test that cannot unwrap should fail loudly")]

//! All integration tests, in one binary so it links once. Each test drives the real server over
//! HTTP, on SQLite and on PostgreSQL.

mod helpers;

mod api_keys;
mod auth;
mod batch;
mod billing;
mod cli;
mod clock;
mod credits;
mod customers;
mod edge;
mod errors;
mod events;
mod fake_llm;
mod gateway;
mod holds;
mod limits;
mod metrics;
mod newcomer;
mod openapi;
mod portal;
mod resilience;
mod schema;
mod status_checks;
mod streams;
mod stripe;
mod webhooks;
