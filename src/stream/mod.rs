//! Blob streams: the checks every byte of a blob passes on its way to the client (digest,
//! inspection), tail-hold, and the typed refusal a check hands back. A leaf: it knows nothing of
//! policy, inspection or the cache, which plug into it through [`BlobCheck`].

pub mod offload;
pub mod tailhold;
mod veto;

pub use tailhold::{BlobCheck, DigestCheck, OnEnd, TailHold, Window};
pub use veto::{Refusal, Veto};
