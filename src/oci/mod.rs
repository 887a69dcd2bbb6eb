//! Domain types of the distribution API: digests, names, references, media types, the error envelope,
//! and the OCI documents (manifests, indexes, image configs) read the way the clients read them.

pub mod digest;
pub mod document;
pub mod error;
pub mod json;
pub mod media;
pub mod name;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use document::{
    Descriptor, DocumentError, ImageConfig, ImageIndex, ImageManifest, Manifest, Platform,
};
pub use error::{ErrorCode, ErrorEnvelope, ErrorInfo};
pub use name::{NameError, QualifiedName, Reference, ReferenceError, RepoName, Tag};
