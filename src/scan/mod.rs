//! `portcullis scan`: the proxy's inspection engine run offline on one image (an OCI layout, a
//! `docker save` archive, or a remote reference fetched through the upstream client), ending in the
//! same decision the proxy would reach.
//!
//! The sources ([`layout`], [`archive`], [`remote`]) only find and read blobs; every layer is
//! streamed through a [`LayerInspector`] (digest checked on the way) and never kept whole.
//! [`Scanner::judge`] then hands name, config and layer findings to the proxy's own judge
//! ([`crate::judge`]), so a scan decides as a pull does.

pub mod archive;
pub mod layout;
pub mod remote;
pub mod report;

pub use report::{ImageSummary, ReportFinding, ScanReport};

use crate::config::Config;
use crate::inspect::config::ConfigInspector;
use crate::inspect::layer::{Compression, LayerInspector, LayerReport, LayerRules, Limits};
use crate::inspect::name::NameInspector;
use crate::inspect::rules::RuleSet;
use crate::inspect::{Decision, Finding};
use crate::judge::{ImageEvidence, Runs};
use crate::oci::{Descriptor, Digest, ImageConfig, Reference, RepoName};
use crate::policy::Policy;
use crate::upstream::{RouteError, Upstreams};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Exit status of `portcullis scan` when the image is allowed.
pub const EXIT_ALLOW: i32 = 0;
/// … when it would be served with a warning.
pub const EXIT_WARN: i32 = 1;
/// … when the proxy would refuse it.
pub const EXIT_BLOCK: i32 = 2;
/// … when it could not be scanned (unreadable input, upstream failure, bad config).
pub const EXIT_ERROR: i32 = 3;
/// … for a command-line usage error (sysexits' `EX_USAGE`; clap's own 2 would read as "block").
pub const EXIT_USAGE: i32 = 64;

pub use crate::inspect::config::MAX_CONFIG_BYTES;
pub use crate::oci::media::IMAGE_CONFIG_TYPES;
/// The largest manifest, index or `manifest.json` read from a local source.
pub const MAX_MANIFEST_BYTES: usize = 16 << 20;
/// Bytes read from a local layer at a time.
const CHUNK: usize = 1 << 20;

/// Why a scan could not reach a decision.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The command line asks for something that cannot be (exits [`EXIT_USAGE`]).
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The input is not what it claims to be: no such tag, a malformed manifest, a missing blob.
    #[error("{0}")]
    Input(String),
    /// A blob whose bytes do not match the digest that names it.
    #[error("{what} {expected} hashes to {got}")]
    Digest {
        what: String,
        expected: Digest,
        got: Digest,
    },
    #[error(transparent)]
    Upstream(#[from] crate::proxy::Error),
    #[error(transparent)]
    Route(#[from] RouteError),
}

impl ScanError {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> ScanError {
        ScanError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// The exit status this error ends `portcullis scan` with.
    pub fn exit_code(&self) -> i32 {
        match self {
            ScanError::Usage(_) => EXIT_USAGE,
            _ => EXIT_ERROR,
        }
    }
}

pub type Result<T, E = ScanError> = std::result::Result<T, E>;

/// What to scan, as parsed from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An OCI image layout directory, and the tag (`org.opencontainers.image.ref.name`) to scan.
    Layout { dir: PathBuf, tag: Option<String> },
    /// A `docker save` (or `skopeo copy … docker-archive:`) tarball, and the `RepoTags` entry to
    /// scan when it holds several images.
    Archive {
        file: PathBuf,
        reference: Option<String>,
    },
    /// `[host/]repo` with a tag or digest, fetched from the configured upstream.
    Remote { name: String, reference: Reference },
}

impl Target {
    /// Reads `oci:DIR[:TAG]`, `docker-archive:FILE[:REF]`, `docker://[HOST/]REPO[:TAG|@DIGEST]`,
    /// or a plain path: a directory holding `index.json`/`oci-layout`, or a file (an archive).
    pub fn parse(s: &str) -> Result<Target> {
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = split_existing(rest, Path::is_dir);
            return Ok(Target::Layout { dir, tag });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            let (file, reference) = split_existing(rest, Path::is_file);
            return Ok(Target::Archive { file, reference });
        }
        if let Some(rest) = s.strip_prefix("docker://") {
            return Target::remote(rest);
        }
        let path = Path::new(s);
        if path.is_dir() {
            if path.join("index.json").is_file() || path.join("oci-layout").is_file() {
                return Ok(Target::Layout {
                    dir: path.to_path_buf(),
                    tag: None,
                });
            }
            return Err(ScanError::Input(format!(
                "{s}: a directory without index.json or oci-layout is not an OCI layout"
            )));
        }
        if path.is_file() {
            return Ok(Target::Archive {
                file: path.to_path_buf(),
                reference: None,
            });
        }
        Err(ScanError::Input(format!(
            "{s}: no such file or directory (a remote image is named docker://[HOST/]REPO[:TAG])"
        )))
    }

    fn remote(rest: &str) -> Result<Target> {
        let bad = |why: String| ScanError::Usage(format!("docker://{rest}: {why}"));
        let (name, reference) = match rest.split_once('@') {
            Some((name, digest)) => (
                name,
                Reference::Digest(digest.parse().map_err(|e| bad(format!("{e}")))?),
            ),
            None => {
                let last = rest.rfind('/').map_or(0, |i| i + 1);
                match rest[last..].rsplit_once(':') {
                    Some((_, tag)) => (
                        &rest[..rest.len() - tag.len() - 1],
                        Reference::Tag(tag.parse().map_err(|e| bad(format!("{e}")))?),
                    ),
                    None => (rest, Reference::Tag("latest".parse().expect("a valid tag"))),
                }
            }
        };
        if name.is_empty() {
            return Err(bad("no repository".into()));
        }
        Ok(Target::Remote {
            name: name.to_string(),
            reference,
        })
    }
}

/// Splits `PATH[:SUFFIX]` where PATH itself may hold `:`: the first split whose path part passes
/// `exists` wins; when none does, all of it is the path (and opening it will say what is wrong).
fn split_existing(s: &str, exists: fn(&Path) -> bool) -> (PathBuf, Option<String>) {
    if exists(Path::new(s)) {
        return (PathBuf::from(s), None);
    }
    for (i, _) in s.match_indices(':') {
        let (path, suffix) = (&s[..i], &s[i + 1..]);
        if !suffix.is_empty() && exists(Path::new(path)) {
            return (PathBuf::from(path), Some(suffix.to_string()));
        }
    }
    (PathBuf::from(s), None)
}

/// Which images of a multi-platform index to scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Platforms {
    /// linux/amd64, or the only image there is.
    #[default]
    Default,
    /// `os/arch[/variant]`.
    One(PlatformSpec),
    /// Every image in the index (attestations aside).
    All,
}

/// `os/arch[/variant]`, as `--platform` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl std::str::FromStr for PlatformSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(PlatformSpec {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: parts
                    .get(2)
                    .filter(|v| !v.is_empty())
                    .map(|v| v.to_string()),
            }),
            _ => Err(format!(
                "{s:?}: expected os/arch or os/arch/variant (linux/arm64)"
            )),
        }
    }
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The entries of an index to scan under `choice`. Attestation manifests (`unknown/unknown`) are
/// never images.
pub fn select_platforms<'a>(
    manifests: &'a [Descriptor],
    choice: &Platforms,
) -> Result<Vec<&'a Descriptor>> {
    let images: Vec<&Descriptor> = manifests.iter().filter(|m| !m.is_attestation()).collect();
    let listed = || {
        let names: Vec<String> = images
            .iter()
            .map(|d| d.platform_name().unwrap_or_else(|| "unnamed".into()))
            .collect();
        names.join(", ")
    };
    let chosen: Vec<&Descriptor> = match choice {
        Platforms::All => images.clone(),
        Platforms::One(spec) => images
            .iter()
            .filter(|d| {
                d.platform().is_some_and(|p| {
                    p.os == spec.os
                        && p.architecture == spec.arch
                        && spec
                            .variant
                            .as_ref()
                            .is_none_or(|v| p.variant.as_ref() == Some(v))
                })
            })
            .take(1)
            .copied()
            .collect(),
        Platforms::Default => {
            let amd64: Vec<&Descriptor> = images
                .iter()
                .filter(|d| {
                    d.platform()
                        .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                })
                .take(1)
                .copied()
                .collect();
            if amd64.is_empty() && images.len() == 1 {
                images.clone()
            } else if amd64.is_empty() {
                return Err(ScanError::Input(format!(
                    "the index has no linux/amd64 image (it has: {}); pick one with --platform or scan all with --all-platforms",
                    listed()
                )));
            } else {
                amd64
            }
        }
    };
    if chosen.is_empty() {
        let wanted = match choice {
            Platforms::One(spec) => spec.to_string(),
            _ => "image".into(),
        };
        return Err(ScanError::Input(format!(
            "the index has no {wanted} (it has: {})",
            if images.is_empty() {
                "none".into()
            } else {
                listed()
            }
        )));
    }
    Ok(chosen)
}

/// A layer as a manifest lists it, with where a local source finds its bytes.
#[derive(Debug, Clone)]
pub struct LayerSource {
    /// Where the bytes are: a path in the layout or archive (for messages and for opening).
    pub path: String,
    pub media_type: String,
    /// The digest that names the blob, checked over its bytes; `None` for a legacy
    /// `docker save` layer (`<id>/layer.tar`), which is then named by its sha256 in findings.
    pub digest: Option<Digest>,
    pub size: Option<u64>,
}

/// One image found in a local source, not yet read past its config.
#[derive(Debug, Clone)]
pub struct LocalImage {
    pub manifest: Option<Digest>,
    pub config_digest: Option<Digest>,
    /// `None` when the config is not an image config (an artifact): nothing to judge in it.
    pub config: Option<Vec<u8>>,
    /// From the index, when the config does not say.
    pub platform: Option<String>,
    pub layers: Vec<LayerSource>,
}

/// One image with every layer inspected: what [`Scanner::judge`] prices.
#[derive(Debug, Clone)]
pub struct InspectedImage {
    pub manifest: Option<Digest>,
    pub config_digest: Option<Digest>,
    pub config: Option<Vec<u8>>,
    pub platform: Option<String>,
    pub layers: Vec<InspectedLayer>,
}

/// One layer's report and the digest it goes by.
#[derive(Debug, Clone)]
pub struct InspectedLayer {
    /// The blob digest (computed, for a legacy `docker save` layer).
    pub digest: Digest,
    pub report: LayerReport,
    /// Listed as a file-system layer ([`crate::oci::media::is_rootfs_layer`]).
    pub rootfs: bool,
}

/// One image judged.
#[derive(Debug, Clone)]
pub struct ImageVerdict {
    pub summary: ImageSummary,
    /// Its config and layer findings (not the name's).
    pub findings: Vec<Finding>,
}

/// The inspection engine of the guard, without store, overrides or audit: rules, names, policy.
pub struct Scanner {
    rules: Arc<RuleSet>,
    layer_rules: Arc<LayerRules>,
    names: NameInspector,
    policy: Policy,
    limits: Limits,
}

impl Scanner {
    pub fn new(
        rules: Arc<RuleSet>,
        names: NameInspector,
        policy: Policy,
        limits: Limits,
    ) -> Scanner {
        Scanner {
            layer_rules: Arc::new(LayerRules::new(rules.clone())),
            rules,
            names,
            policy,
            limits,
        }
    }

    pub fn ruleset_hash(&self) -> &str {
        &self.rules.hash
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The name's findings, for `repo` as pulled from `host`.
    pub fn name_findings(&self, host: &str, repo: &RepoName) -> Vec<Finding> {
        self.names.inspect(host, repo)
    }

    /// A fresh inspector for one layer blob.
    pub fn layer_inspector(&self, media_type: &str, digest: Option<&Digest>) -> LayerInspector {
        LayerInspector::with_layer_rules(
            self.layer_rules.clone(),
            Compression::from_media_type(media_type),
            self.limits,
            digest.map(Digest::to_string),
        )
    }

    /// Streams one local layer through an inspector, checking its size and digest. Nothing is
    /// kept but the report.
    pub fn inspect_reader(
        &self,
        layer: &LayerSource,
        mut reader: impl Read,
    ) -> Result<InspectedLayer> {
        let mut inspector = self.layer_inspector(&layer.media_type, layer.digest.as_ref());
        let mut hasher = layer
            .digest
            .as_ref()
            .map_or(crate::oci::Algorithm::Sha256, Digest::algorithm)
            .hasher();
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ScanError::io(&layer.path, e)),
            };
            total += n as u64;
            hasher.update(&buf[..n]);
            inspector.update(&buf[..n]);
        }
        let got = hasher.finish();
        if let Some(size) = layer.size.filter(|s| *s != total) {
            return Err(ScanError::Input(format!(
                "layer {}: {total} bytes where the manifest says {size}",
                layer.path
            )));
        }
        let mut report = inspector.finish();
        match &layer.digest {
            Some(expected) if *expected != got => {
                return Err(ScanError::Digest {
                    what: format!("layer {}", layer.path),
                    expected: expected.clone(),
                    got,
                })
            }
            Some(_) => {}
            None => {
                for f in &mut report.findings {
                    f.evidence.layer = Some(got.to_string());
                }
            }
        }
        Ok(InspectedLayer {
            digest: got,
            report,
            rootfs: crate::oci::media::is_rootfs_layer(&layer.media_type),
        })
    }

    /// Judges one image under `name` (the repository's findings) with the judge the proxy uses:
    /// see [`crate::judge`] for how the evidence combines.
    pub fn judge(&self, name: &[Finding], image: InspectedImage) -> ImageVerdict {
        let judge = &self.policy.judge;
        let (config, runs) = match &image.config {
            Some(config) => (
                judge.config_findings(&ConfigInspector::new(&self.rules), config),
                Runs::of_config(config),
            ),
            None => (Vec::new(), Runs::default()),
        };
        let layer_count = image.layers.len();
        let layers: Vec<Vec<Finding>> = image
            .layers
            .into_iter()
            .filter_map(|l| judge.layer_findings(l.report, &l.digest.to_string(), l.rootfs))
            .collect();
        let layer_refs: Vec<&[Finding]> = layers.iter().map(Vec::as_slice).collect();
        let judged = judge.image(ImageEvidence {
            name,
            config: &config,
            runs: &runs,
            layers: &layer_refs,
        });
        let platform = image
            .config
            .as_deref()
            .and_then(config_platform)
            .or(image.platform);
        // The report lists the name's findings apart; the image's own are the rest.
        let findings = judged
            .findings
            .into_iter()
            .filter(|f| f.category != crate::inspect::Category::Name || !name.contains(f))
            .collect();
        ImageVerdict {
            summary: ImageSummary {
                platform,
                manifest: image.manifest,
                config: image.config_digest,
                layers: layer_count,
                decision: judged.decision,
                score: judged.score,
            },
            findings,
        }
    }

    /// The whole report: the worst image decides; but a name that blocks on its own decides with
    /// its own score, as a pull is refused on its name before anything is fetched.
    pub fn report(
        &self,
        image: String,
        name: Vec<Finding>,
        images: Vec<ImageVerdict>,
    ) -> ScanReport {
        let (decision, score) = self.policy.judge.decide(&name);
        let mut report = ScanReport::new(image, name, images, &self.rules.hash);
        if decision == Decision::Block {
            (report.decision, report.score) = (decision, score);
        }
        report
    }
}

/// `os/arch[/variant]` from an image config.
pub fn config_platform(config: &[u8]) -> Option<String> {
    ImageConfig::parse(config).ok()?.platform_name()
}

/// An image config read as the clients read it, or the reason it is refused (a scan then ends
/// with [`EXIT_ERROR`], as the proxy refuses the image).
pub fn read_config(what: &str, config: &[u8]) -> Result<()> {
    ImageConfig::parse(config)
        .map(|_| ())
        .map_err(|e| ScanError::Input(format!("{what}: image config refused: {e}")))
}

/// The host and repository a name is judged as: routed like a pull through the proxy when its
/// host is configured, else taken as written (`evil.example/x/y` → `evil.example`, `x/y`).
pub fn route_name(upstreams: &Upstreams, name: &str) -> Result<(String, RepoName)> {
    match upstreams.route(name, None) {
        Ok(route) => Ok((route.upstream.host.clone(), route.repo)),
        Err(RouteError::NotConfigured(host)) => {
            let rest = name.split_once('/').map_or("", |(_, r)| r);
            let repo = rest
                .parse()
                .map_err(|e| ScanError::Usage(format!("--name {name:?}: {e}")))?;
            Ok((host.to_ascii_lowercase(), repo))
        }
        Err(RouteError::Name(e)) => Err(ScanError::Usage(format!("--name {name:?}: {e}"))),
    }
}

/// What `portcullis scan` was asked besides the target.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// The repository name a local image is judged under (`--name`).
    pub name: Option<String>,
    pub platforms: Platforms,
}

/// Scans `target` to a report. Blocks the calling thread; a remote reference is fetched on a
/// runtime of its own, so this must not be called from async code.
pub fn run(
    scanner: &Scanner,
    config: &Config,
    target: &Target,
    options: &ScanOptions,
) -> Result<ScanReport> {
    let upstreams =
        Upstreams::from_config(config).map_err(|e| ScanError::Input(format!("config: {e}")))?;
    let name = match (&options.name, target) {
        (Some(_), Target::Remote { .. }) => {
            return Err(ScanError::Usage(
                "--name is for local images: a remote reference is judged under its own name"
                    .into(),
            ))
        }
        (Some(n), _) => {
            let (host, repo) = route_name(&upstreams, n)?;
            scanner.name_findings(&host, &repo)
        }
        (None, _) => Vec::new(),
    };
    match target {
        Target::Layout { dir, tag } => {
            if !dir.is_dir() {
                return Err(ScanError::Input(format!(
                    "{}: no such directory",
                    dir.display()
                )));
            }
            let blobs = layout::DirBlobs::new(dir);
            let images = layout::images(&blobs, tag.as_deref(), &options.platforms)?;
            let judged = inspect_local(scanner, &blobs, &name, images)?;
            let label = match tag {
                Some(t) => format!("oci:{}:{t}", dir.display()),
                None => format!("oci:{}", dir.display()),
            };
            Ok(scanner.report(label, name, judged))
        }
        Target::Archive { file, reference } => {
            let archive = archive::TarBlobs::open(file)?;
            let images = archive::images(&archive, reference.as_deref(), &options.platforms)?;
            let judged = inspect_local(scanner, &archive, &name, images)?;
            let label = match reference {
                Some(r) => format!("docker-archive:{}:{r}", file.display()),
                None => format!("docker-archive:{}", file.display()),
            };
            Ok(scanner.report(label, name, judged))
        }
        Target::Remote {
            name: raw,
            reference,
        } => {
            let client = crate::upstream::UpstreamClient::new(config.upstream.clone())
                .map_err(|e| ScanError::Input(format!("upstream client: {e}")))?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| ScanError::io("tokio runtime", e))?;
            runtime.block_on(remote::scan(
                scanner,
                &upstreams,
                Arc::new(client),
                raw,
                reference,
                &options.platforms,
            ))
        }
    }
}

/// Reads every layer of `images` from `blobs` through the inspector, and judges each image.
fn inspect_local(
    scanner: &Scanner,
    blobs: &dyn layout::Blobs,
    name: &[Finding],
    images: Vec<LocalImage>,
) -> Result<Vec<ImageVerdict>> {
    let mut out = Vec::new();
    for image in images {
        let mut layers = Vec::new();
        for layer in &image.layers {
            let reader = blobs.open(&layer.path)?;
            layers.push(scanner.inspect_reader(layer, reader)?);
        }
        out.push(scanner.judge(
            name,
            InspectedImage {
                manifest: image.manifest,
                config_digest: image.config_digest,
                config: image.config,
                platform: image.platform,
                layers,
            },
        ));
    }
    Ok(out)
}

/// The exit status for a decision.
pub fn exit_code(decision: Decision) -> i32 {
    match decision {
        Decision::Allow => EXIT_ALLOW,
        Decision::Warn => EXIT_WARN,
        Decision::Block => EXIT_BLOCK,
    }
}

#[cfg(test)]
pub(crate) mod tests;
