//! Domain types of the distribution API: digests, names, references, media types, the error envelope.

pub mod digest;
pub mod error;
pub mod media;
pub mod name;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error::{ErrorCode, ErrorEnvelope, ErrorInfo};
pub use name::{NameError, QualifiedName, Reference, ReferenceError, RepoName, Tag};
