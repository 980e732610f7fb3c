//! closebot-sync mirrors the CloseBot sources listing into SQLite or PostgreSQL.
//!
//! The data flows one way, and the modules read in that order:
//! [`config`] (with the [`db_url`] it parses) → [`closebot`] (wire types, client, page
//! walk) → [`model`] (rows, records, diffs) → [`store`] (a file per dialect, migrations,
//! apply) → [`sync`] (one run) → the commands in [`cli`].

#[cfg(feature = "simulator")]
pub mod bench;
pub mod check;
pub mod cli;
pub mod closebot;
pub mod config;
pub mod daemon;
pub mod db_url;
#[cfg(feature = "simulator")]
pub mod demo;
pub mod health;
pub mod model;
pub mod report;
pub mod schedule;
pub mod serve;
pub mod store;
pub mod sync;
pub mod telemetry;
