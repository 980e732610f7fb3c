//! The CloseBot API: wire types (tolerant of null and missing), the HTTP client, the page walk.

mod answer;
pub mod client;
pub(crate) mod source;
pub mod untrusted;
pub mod walk;
pub mod wire;

pub use client::{ApiError, Client};
pub use untrusted::printable;
pub use walk::{walk, PageSink, Walk};
pub use wire::{Page, PageError, RawSource, Source};
