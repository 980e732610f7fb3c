//! closebot-sync: mirrors the CloseBot sources listing into SQLite or PostgreSQL.
pub mod simulator;
