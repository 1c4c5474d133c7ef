//! Kiroku's integration tests: the real router over loopback HTTP, the real
//! binary, and one storage conformance suite run against SQLite and
//! PostgreSQL (when KIROKU_TEST_DATABASE_URL names a server).

mod api;
mod audit;
mod bad_input;
mod browser;
mod cli;
mod conformance;
mod detection;
mod escalation;
mod escalation_cli;
mod intake;
mod intake_cli;
mod notify;
mod notify_cli;
mod openapi;
mod peer;
mod reports;
mod security;
mod support;
mod web;
