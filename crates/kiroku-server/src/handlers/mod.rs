//! Request handlers: translate HTTP into application calls and back.

pub mod audit;
pub mod auth;
pub mod incidents;
pub mod intake;
pub mod meta;
pub mod notify;
pub mod oncall;
pub mod reports;
pub mod services;
