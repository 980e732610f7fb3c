//! closebot-sync mirrors the CloseBot sources listing into SQLite or PostgreSQL.
//!
//! The pipeline in the middle; the data flows one way, and its modules read in that order:
//! [`config`] (settings, with the [`db_url`] it parses) → [`closebot`] (wire types, client,
//! page walk) → [`model`] (rows, records, diffs) → [`store`] (a file per dialect,
//! migrations, apply) → [`sync`] (one run).
//!
//! Around it, two front ends that use it and that it never uses: [`cli`] (the commands, and
//! the one place where an outcome becomes an exit code) and [`service`] (`run`: schedule,
//! daemon, HTTP listener, health, metrics). Below everything, [`text`] and [`failure`]: the
//! words and the kinds of failure every layer's messages share.

pub mod failure;
pub mod text;

pub mod config;
pub mod db_url;

pub mod closebot;

pub mod model;

pub mod store;

pub mod sync;

pub mod cli;
pub mod service;
