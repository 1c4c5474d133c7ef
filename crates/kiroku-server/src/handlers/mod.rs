//! Request handlers: translate HTTP into application calls and back.

pub mod auth;
pub mod incidents;
pub mod meta;
