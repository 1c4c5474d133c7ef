//! The `kiroku` binary's library: configuration, wiring of store, app and
//! server, and the command line (server, local bootstrap, API client).

pub mod allocator;
pub mod audit;
pub mod cli;
pub mod client;
pub mod config;
pub mod notify;
pub mod store;
