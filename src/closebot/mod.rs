//! The CloseBot API: wire types (tolerant of null and missing), the HTTP client, the page walk.

mod answer;
pub(crate) mod client;
pub(crate) mod source;
pub(crate) mod untrusted;
pub(crate) mod walk;
pub(crate) mod wire;

pub use client::{ApiError, Client, MAX_REDIRECTS};
pub use untrusted::printable;
pub use walk::{walk, PageSink, Walk};
pub use wire::{Page, PageError, RawSource, Source};
