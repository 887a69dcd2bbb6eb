//! The documents portcullis reads: image manifests, indexes and image configs, each parsed once,
//! at the edge, into the `oci-spec` crate's types with its digests as [`Digest`]s, after the
//! Go-compatibility check of [`super::json`]. A document either parses here, and then every
//! field read from it is what the clients (Go's `encoding/json`) read, or it is refused whole.
//!
//! Docker's schema 2 manifest and manifest list have the same shape as the OCI image manifest
//! and index, and parse as them (their media types are `MediaType::Other` in oci-spec). The bytes
//! a document came in are never re-serialised: clients always get the upstream's bytes.
//!
//! Where oci-spec does not fit, a small local type says why:
//! - [`ImageConfig`] adds Docker's `Healthcheck` and `OnBuild` (moby's `container.Config`, which
//!   dockerd runs or acts on; the OCI image config has neither).
//! - [`Platform`]: oci-spec's reads `os.version` from the key `os_version`, and its `Arch` parses
//!   `armbe` as `arm64be`; portcullis reads `os`, `architecture` and `variant` as written.

use super::json::{self, GoJsonError};
use super::media::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use super::{Digest, DigestError};
use oci_spec::image as spec;
use serde::Deserialize;
use std::collections::BTreeMap;

/// How documents are read; part of the rule-set hash, so verdicts made from documents read an
/// older way (before the Go-compatibility check) are judged again.
pub const READER_VERSION: &str = "documents-go-json-1";

/// Why a document is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("its media type {0:?} is not one of a manifest or an index")]
    MediaType(String),
    #[error("Go clients would read it differently: {0}")]
    GoJson(#[from] GoJsonError),
    #[error("it says it is {said:?} but was served as {served:?}")]
    MediaTypeMismatch { said: String, served: String },
    #[error("it is served as {served:?} but carries {key:?}, a key of another kind of document")]
    Ambiguous { served: String, key: &'static str },
    #[error("its schemaVersion is {0}, not 2")]
    SchemaVersion(u32),
    #[error("it does not parse: {0}")]
    Parse(String),
    #[error("it lists a digest portcullis cannot verify: {0}")]
    Digest(#[from] DigestError),
}

pub type Result<T, E = DocumentError> = std::result::Result<T, E>;

/// What of the upstream's text goes into a message (serde quotes the values it refuses).
fn cut(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Whether `media_type` is that of an index (OCI, or a Docker manifest list).
pub fn is_index_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// Whether `media_type` is that of a manifest or an index portcullis reads. Anything else (a
/// schema 1 manifest, the withdrawn OCI artifact manifest, a generic type) is refused: it cannot
/// be judged.
pub fn is_manifest_type(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_MANIFEST | DOCKER_MANIFEST | OCI_INDEX | DOCKER_LIST
    )
}

/// The platform of a descriptor or an image config, as written (see the module docs for why not
/// oci-spec's). The typed parse has already refused one without `architecture` or `os`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// `os/arch[/variant]`.
    pub fn name(&self) -> String {
        platform_name(&self.os, &self.architecture, self.variant.as_deref())
    }
}

/// A descriptor's platform, read alongside oci-spec's descriptor.
#[derive(Deserialize)]
struct RawDescriptor {
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct RawManifest {
    config: RawDescriptor,
    layers: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
struct RawIndex {
    manifests: Vec<RawDescriptor>,
}

/// A content descriptor whose digest portcullis can verify.
#[derive(Debug, Clone)]
pub struct Descriptor {
    pub digest: Digest,
    platform: Option<Platform>,
    spec: Box<spec::Descriptor>,
}

impl Descriptor {
    fn new(spec: &spec::Descriptor, raw: RawDescriptor) -> Result<Descriptor> {
        Ok(Descriptor {
            digest: spec.digest().to_string().parse()?,
            platform: raw.platform,
            spec: Box::new(spec.clone()),
        })
    }

    pub fn media_type(&self) -> &str {
        self.spec.media_type().as_ref()
    }

    pub fn size(&self) -> u64 {
        self.spec.size()
    }

    pub fn platform(&self) -> Option<&Platform> {
        self.platform.as_ref()
    }

    /// `os/arch[/variant]`, when the descriptor names a platform.
    pub fn platform_name(&self) -> Option<String> {
        self.platform().map(Platform::name)
    }

    /// Whether the descriptor is a build attestation (`unknown/unknown`), not an image.
    pub fn is_attestation(&self) -> bool {
        self.platform().is_some_and(|p| p.os == "unknown")
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.spec
            .annotations()
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    pub fn spec(&self) -> &spec::Descriptor {
        &self.spec
    }
}

fn platform_name(os: &str, arch: &str, variant: Option<&str>) -> String {
    match variant.filter(|v| !v.is_empty()) {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    }
}

/// An image manifest (OCI, or Docker schema 2).
#[derive(Debug, Clone)]
pub struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    spec: Box<spec::ImageManifest>,
}

impl ImageManifest {
    pub fn spec(&self) -> &spec::ImageManifest {
        &self.spec
    }

    /// Every layer digest, in order.
    pub fn layer_digests(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.digest.clone()).collect()
    }
}

/// An index (OCI, or a Docker manifest list).
#[derive(Debug, Clone)]
pub struct ImageIndex {
    pub manifests: Vec<Descriptor>,
    spec: Box<spec::ImageIndex>,
}

impl ImageIndex {
    pub fn spec(&self) -> &spec::ImageIndex {
        &self.spec
    }

    /// An OCI layout's `index.json` (which has no media type of its own but the OCI index's).
    pub fn parse_layout(bytes: &[u8]) -> Result<ImageIndex> {
        match Manifest::parse(OCI_INDEX, bytes)? {
            Manifest::Index(i) => Ok(i),
            Manifest::Image(_) => unreachable!("an index type parses as an index"),
        }
    }
}

/// A manifest as served: an image or an index, by its media type.
#[derive(Debug, Clone)]
pub enum Manifest {
    Image(ImageManifest),
    Index(ImageIndex),
}

impl Manifest {
    /// Parses `bytes` served (or listed) as `media_type`: the media type picks the kind, as it
    /// does for the clients. Refused: a type that is not a manifest or an index, a document Go
    /// would read differently ([`json::check`]), a `mediaType` field that says otherwise, a key
    /// of the other kind (`manifests` in a manifest; `config`, `layers` or `fsLayers` in an
    /// index: containerd refuses those, others would read them as the wrong kind), a
    /// `schemaVersion` other than 2, a document oci-spec does not parse (a descriptor without
    /// `mediaType`, `digest` or `size`, a manifest without `config` or `layers`…), and a digest
    /// other than sha256 or sha512.
    pub fn parse(media_type: &str, bytes: &[u8]) -> Result<Manifest> {
        if !is_manifest_type(media_type) {
            return Err(DocumentError::MediaType(cut(media_type)));
        }
        let index = is_index_type(media_type);
        json::check(bytes, if index { &json::INDEX } else { &json::MANIFEST })?;
        let keys = json::top_level_keys(bytes);
        let foreign: &[&'static str] = if index {
            &["config", "layers", "fsLayers"]
        } else {
            &["manifests", "fsLayers"]
        };
        if let Some(key) = foreign.iter().find(|k| keys.contains(**k)) {
            return Err(DocumentError::Ambiguous {
                served: media_type.to_string(),
                key,
            });
        }
        let parse_error = |e: serde_json::Error| DocumentError::Parse(cut(&e.to_string()));
        let said_matches = |said: &Option<spec::MediaType>| match said {
            Some(said) if said.as_ref() != media_type => Err(DocumentError::MediaTypeMismatch {
                said: cut(said.as_ref()),
                served: media_type.to_string(),
            }),
            _ => Ok(()),
        };
        let version = |v: u32| {
            if v == 2 {
                Ok(())
            } else {
                Err(DocumentError::SchemaVersion(v))
            }
        };
        if index {
            let spec: spec::ImageIndex = serde_json::from_slice(bytes).map_err(parse_error)?;
            let raw: RawIndex = serde_json::from_slice(bytes).map_err(parse_error)?;
            said_matches(spec.media_type())?;
            version(spec.schema_version())?;
            let manifests = spec
                .manifests()
                .iter()
                .zip(raw.manifests)
                .map(|(d, raw)| Descriptor::new(d, raw))
                .collect::<Result<_>>()?;
            return Ok(Manifest::Index(ImageIndex {
                manifests,
                spec: Box::new(spec),
            }));
        }
        let spec: spec::ImageManifest = serde_json::from_slice(bytes).map_err(parse_error)?;
        let raw: RawManifest = serde_json::from_slice(bytes).map_err(parse_error)?;
        said_matches(spec.media_type())?;
        version(spec.schema_version())?;
        let config = Descriptor::new(spec.config(), raw.config)?;
        let layers = spec
            .layers()
            .iter()
            .zip(raw.layers)
            .map(|(d, raw)| Descriptor::new(d, raw))
            .collect::<Result<_>>()?;
        Ok(Manifest::Image(ImageManifest {
            config,
            layers,
            spec: Box::new(spec),
        }))
    }
}

/// An image config: the OCI image config, plus what dockerd also reads from moby's
/// `container.Config` (oci-spec's `Config` has no `Healthcheck` nor `OnBuild`).
#[derive(Debug, Clone)]
pub struct ImageConfig {
    spec: spec::ImageConfiguration,
    platform: Platform,
    docker: DockerRun,
}

/// What oci-spec's `ImageConfiguration` does not read (or not as written).
#[derive(Debug, Clone, Default, Deserialize)]
struct Extras {
    #[serde(flatten)]
    platform: Platform,
    #[serde(default)]
    config: Option<DockerRun>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct DockerRun {
    #[serde(rename = "Healthcheck", default)]
    healthcheck: Option<Healthcheck>,
    /// Instructions run when another image is built FROM this one.
    #[serde(rename = "OnBuild", default)]
    on_build: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Healthcheck {
    /// `["CMD", args…]`, `["CMD-SHELL", command]` or `["NONE"]`.
    #[serde(rename = "Test", default)]
    test: Option<Vec<String>>,
}

impl ImageConfig {
    /// Parses an image config. Refused: what Go would read differently ([`json::check`]), and
    /// what oci-spec does not parse: no `architecture`, `os` or `rootfs`, a value of the wrong
    /// type (an `Entrypoint` that is a string, which moby takes as one argument and containerd
    /// refuses), a `null` inside a list or a map.
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig> {
        json::check(bytes, &json::IMAGE_CONFIG)?;
        let parse_error = |e: serde_json::Error| DocumentError::Parse(cut(&e.to_string()));
        let spec: spec::ImageConfiguration = serde_json::from_slice(bytes).map_err(parse_error)?;
        let extras: Extras = serde_json::from_slice(bytes).map_err(parse_error)?;
        Ok(ImageConfig {
            spec,
            platform: extras.platform,
            docker: extras.config.unwrap_or_default(),
        })
    }

    pub fn spec(&self) -> &spec::ImageConfiguration {
        &self.spec
    }

    fn run(&self) -> Option<&spec::Config> {
        self.spec.config().as_ref()
    }

    pub fn entrypoint(&self) -> &[String] {
        self.run()
            .and_then(|c| c.entrypoint().as_deref())
            .unwrap_or_default()
    }

    pub fn cmd(&self) -> &[String] {
        self.run()
            .and_then(|c| c.cmd().as_deref())
            .unwrap_or_default()
    }

    pub fn env(&self) -> &[String] {
        self.run()
            .and_then(|c| c.env().as_deref())
            .unwrap_or_default()
    }

    /// The working directory, when set and not empty.
    pub fn working_dir(&self) -> Option<&str> {
        self.run()
            .and_then(|c| c.working_dir().as_deref())
            .filter(|w| !w.is_empty())
    }

    pub fn user(&self) -> Option<&str> {
        self.run().and_then(|c| c.user().as_deref())
    }

    /// The labels, in key order.
    pub fn labels(&self) -> BTreeMap<&str, &str> {
        self.run()
            .and_then(|c| c.labels().as_ref())
            .map(|l| l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
            .unwrap_or_default()
    }

    /// Docker's health check command (`["CMD", …]`, `["CMD-SHELL", …]`, `["NONE"]`).
    pub fn healthcheck_test(&self) -> &[String] {
        self.docker
            .healthcheck
            .as_ref()
            .and_then(|h| h.test.as_deref())
            .unwrap_or_default()
    }

    /// Docker's `ONBUILD` triggers.
    pub fn on_build(&self) -> &[String] {
        self.docker.on_build.as_deref().unwrap_or_default()
    }

    pub fn history(&self) -> &[spec::History] {
        self.spec.history().as_deref().unwrap_or_default()
    }

    /// `os`, `architecture` and `variant`, as written.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// `os/arch[/variant]`, when both are set.
    pub fn platform_name(&self) -> Option<String> {
        let p = &self.platform;
        (!p.os.is_empty() && !p.architecture.is_empty()).then(|| p.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn manifest(media_type: &str) -> serde_json::Value {
        json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": D1, "size": 7},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": D2, "size": 9}],
        })
    }

    fn bytes(v: &serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    #[test]
    fn docker_and_oci_manifests_parse_with_their_digests() {
        for t in [DOCKER_MANIFEST, OCI_MANIFEST] {
            let Manifest::Image(m) = Manifest::parse(t, &bytes(&manifest(t))).unwrap() else {
                panic!("{t}: not an image");
            };
            assert_eq!(m.config.digest.to_string(), D1);
            assert_eq!(m.layer_digests()[0].to_string(), D2);
            assert_eq!(m.layers[0].size(), 9);
        }
        // mediaType is optional in an OCI manifest.
        let mut m = manifest(OCI_MANIFEST);
        m.as_object_mut().unwrap().remove("mediaType");
        assert!(Manifest::parse(OCI_MANIFEST, &bytes(&m)).is_ok());
    }

    #[test]
    fn docker_lists_and_oci_indexes_parse_with_platforms() {
        let list = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [
                {"mediaType": DOCKER_MANIFEST, "digest": D1, "size": 7, "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
                {"mediaType": DOCKER_MANIFEST, "digest": D2, "size": 7, "platform": {"architecture": "unknown", "os": "unknown"}},
            ],
        });
        let Manifest::Index(i) = Manifest::parse(DOCKER_LIST, &bytes(&list)).unwrap() else {
            panic!("not an index");
        };
        assert_eq!(
            i.manifests[0].platform_name().as_deref(),
            Some("linux/arm/v7")
        );
        assert!(!i.manifests[0].is_attestation());
        assert!(i.manifests[1].is_attestation());
        // As written: oci-spec would read armbe as arm64be.
        let armbe = json!({"schemaVersion": 2, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": D1, "size": 1, "platform": {"architecture": "armbe", "os": "linux"}}]});
        let Manifest::Index(i) = Manifest::parse(OCI_INDEX, &bytes(&armbe)).unwrap() else {
            panic!("not an index");
        };
        assert_eq!(
            i.manifests[0].platform_name().as_deref(),
            Some("linux/armbe")
        );
        let layout = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(ImageIndex::parse_layout(layout)
            .unwrap()
            .manifests
            .is_empty());
    }

    #[test]
    fn what_the_clients_could_read_otherwise_is_refused() {
        let ok = bytes(&manifest(OCI_MANIFEST));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("generic type", ok.clone()),
            (OCI_INDEX, ok.clone()),
            (
                OCI_MANIFEST,
                String::from_utf8(ok.clone())
                    .unwrap()
                    .replace("\"config\"", "\"Config\"")
                    .into_bytes(),
            ),
            (
                OCI_MANIFEST,
                format!(
                    r#"{{"schemaVersion":2,"config":{{"mediaType":"a","digest":"{D1}","size":1}},"config":{{"mediaType":"a","digest":"{D2}","size":1}},"layers":[]}}"#
                )
                .into_bytes(),
            ),
            (DOCKER_MANIFEST, bytes(&manifest(OCI_MANIFEST))),
            (OCI_MANIFEST, {
                let mut m = manifest(OCI_MANIFEST);
                m["manifests"] = json!([]);
                bytes(&m)
            }),
            (OCI_MANIFEST, {
                let mut m = manifest(OCI_MANIFEST);
                m["schemaVersion"] = json!(1);
                bytes(&m)
            }),
            (OCI_MANIFEST, {
                let mut m = manifest(OCI_MANIFEST);
                m["config"]["digest"] = json!("md5:00");
                bytes(&m)
            }),
            (OCI_MANIFEST, {
                let mut m = manifest(OCI_MANIFEST);
                m["layers"][0].as_object_mut().unwrap().remove("size");
                bytes(&m)
            }),
            (OCI_MANIFEST, b"not json".to_vec()),
            (OCI_MANIFEST, b"null".to_vec()),
        ];
        for (t, doc) in cases {
            assert!(
                Manifest::parse(t, &doc).is_err(),
                "{t}: {}",
                String::from_utf8_lossy(&doc)
            );
        }
        let index = json!({"schemaVersion": 2, "manifests": [], "layers": []});
        assert_eq!(
            Manifest::parse(OCI_INDEX, &bytes(&index)).unwrap_err(),
            DocumentError::Ambiguous {
                served: OCI_INDEX.into(),
                key: "layers"
            }
        );
    }

    fn config(run: serde_json::Value) -> serde_json::Value {
        json!({"architecture": "arm64", "os": "linux", "variant": "v8", "config": run,
               "rootfs": {"type": "layers", "diff_ids": []}, "history": [{"created_by": "RUN x"}]})
    }

    #[test]
    fn messages_quote_the_upstream_cut_short() {
        let big = "x".repeat(100_000);
        let mut m = manifest(OCI_MANIFEST);
        m["layers"][0]["size"] = json!(big);
        let e = Manifest::parse(OCI_MANIFEST, &bytes(&m)).unwrap_err();
        assert!(matches!(e, DocumentError::Parse(_)));
        assert!(e.to_string().len() < 400, "{e}");
        m = manifest(OCI_MANIFEST);
        m["mediaType"] = json!(big);
        let e = Manifest::parse(OCI_MANIFEST, &bytes(&m)).unwrap_err();
        assert!(e.to_string().len() < 400, "{e}");
    }

    #[test]
    fn image_configs_read_oci_and_docker_fields() {
        let c = ImageConfig::parse(&bytes(&config(json!({
            "Entrypoint": ["/bin/app"], "Cmd": ["-v"], "Env": ["A=1"], "WorkingDir": "/w",
            "User": "1000", "Labels": {"b": "2", "a": "1"},
            "Healthcheck": {"Test": ["CMD", "true"]}, "OnBuild": ["RUN y"],
        }))))
        .unwrap();
        assert_eq!(c.entrypoint(), ["/bin/app"]);
        assert_eq!(c.cmd(), ["-v"]);
        assert_eq!(c.env(), ["A=1"]);
        assert_eq!(c.working_dir(), Some("/w"));
        assert_eq!(c.user(), Some("1000"));
        assert_eq!(
            c.labels().into_iter().collect::<Vec<_>>(),
            [("a", "1"), ("b", "2")]
        );
        assert_eq!(c.healthcheck_test(), ["CMD", "true"]);
        assert_eq!(c.on_build(), ["RUN y"]);
        assert_eq!(c.history()[0].created_by().as_deref(), Some("RUN x"));
        assert_eq!(c.platform_name().as_deref(), Some("linux/arm64/v8"));
        let empty = ImageConfig::parse(&bytes(&config(json!(null)))).unwrap();
        assert!(empty.entrypoint().is_empty() && empty.working_dir().is_none());
    }

    #[test]
    fn image_configs_the_clients_could_read_otherwise_are_refused() {
        for doc in [
            config(json!({"entrypoint": ["/bin/sh"]})),
            config(json!({"Entrypoint": "/tmp/x"})),
            config(json!({"Env": ["A=1", null]})),
            json!({"config": {}}),
        ] {
            assert!(ImageConfig::parse(&bytes(&doc)).is_err(), "{doc}");
        }
        let dup = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Cmd":["/ok"],"Cmd":["/tmp/xmrig"]}}"#;
        assert!(matches!(
            ImageConfig::parse(dup),
            Err(DocumentError::GoJson(GoJsonError::Duplicate { .. }))
        ));
    }
}
