//! Support for Kiroku's benchmarks (`benches/kiroku.rs`): seeding large
//! stores through the store's own transactions.

pub mod seed;
