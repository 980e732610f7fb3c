//! closebot-sync: mirrors the CloseBot sources listing into SQLite or PostgreSQL.
