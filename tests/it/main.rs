//! The integration tests: one binary, the simulator on loopback, every storage test on
//! SQLite and, when TEST_DATABASE_URL is set, on PostgreSQL.

mod cli;
mod common;
mod daemon;
mod dashboards;
mod faults;
mod history;
mod mirror;
mod operators;
mod pipeline;
mod simulator_contract;
mod soak;
mod untrusted_api;
mod untrusted_records;
