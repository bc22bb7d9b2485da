//! Tollgate: credit-based billing for AI features.

pub mod auth;
pub mod billing;
pub mod body;
pub mod cli;
pub mod clock;
pub mod config;
pub mod credits;
pub mod customers;
pub mod db;
pub mod domain;
pub mod entities;
pub mod error;
pub mod example;
pub mod gateway;
pub mod head;
pub mod health;
pub mod idempotency;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod request_id;
pub mod routes;
pub mod seed;
pub mod spa;
pub mod startup;
pub mod state;
