//! The `portcullis` command: `serve` the proxy, `scan` an image offline, `config check` a file,
//! manage `override`s, probe a running proxy's `health`.

use anyhow::Context as _;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use portcullis::config::{Config, LogFormat, UpstreamConfig};
use portcullis::oci::Digest;
use portcullis::store::{
    NewOverride, OverrideAction, OverrideTarget, RepoPattern, SledStore, VerdictStore,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A pull-through registry proxy that refuses malicious images",
    after_help = "A command-line usage error exits with status 64."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (with the embedded default config unless --config is given).
    Serve(ServeArgs),
    /// Judge one image offline with the proxy's engine: an OCI layout, a docker save archive, or
    /// a remote image fetched through the configured upstreams.
    #[command(after_help = SCAN_HELP)]
    Scan(ScanArgs),
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Allow or deny images by repository or digest, whatever their verdict. Works on the verdict
    /// store directly, so only while `portcullis serve` is stopped: the running proxy holds it.
    Override {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: OverrideCommand,
    },
    /// Ask a running proxy whether it is up: exit 0 when GET /healthz answers 200 within the
    /// timeout, else 1 (for container health checks; the image has no curl).
    Health(HealthArgs),
}

#[derive(Args)]
struct HealthArgs {
    /// The URL to probe.
    #[arg(long, default_value = "http://127.0.0.1:5000/healthz")]
    url: String,
    /// How long the whole request may take, e.g. 3s, 500ms.
    #[arg(long, value_name = "DURATION", default_value = "3s")]
    timeout: portcullis::config::HumanDuration,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file (and that its secrets can be read); the error names the bad field.
    Check { file: PathBuf },
    /// Print the embedded default config (the documented example).
    Default,
}

#[derive(Args)]
struct StoreArgs {
    /// Config file (TOML) saying where the store is. Without it the embedded default is used.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Directory for portcullis' state; the store is <data-dir>/verdicts unless [store] path says
    /// otherwise.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum OverrideCommand {
    /// Add an override: --repo or --digest, --allow or --deny, with --reason and --author.
    Add(Box<AddOverride>),
    /// List the overrides, expired ones marked.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove an override by its id.
    Remove { id: u64 },
    /// Remove every expired override.
    Prune,
}

#[derive(Args)]
#[command(group(ArgGroup::new("target").required(true).args(["repo", "digest"])))]
#[command(group(ArgGroup::new("action").required(true).args(["allow", "deny"])))]
struct AddOverride {
    /// Repositories as host/name: exact (docker.io/library/nginx) or a glob (docker.io/myorg/*,
    /// where * also crosses /). The host must be a configured upstream.
    #[arg(long)]
    repo: Option<RepoPattern>,
    /// One manifest or blob, under any repository (sha256:...).
    #[arg(long)]
    digest: Option<Digest>,
    /// Serve what matches, whatever its verdict.
    #[arg(long)]
    allow: bool,
    /// Refuse what matches, whatever its verdict.
    #[arg(long)]
    deny: bool,
    /// Why; shown by `override list`.
    #[arg(long)]
    reason: String,
    /// Who asks.
    #[arg(long)]
    author: String,
    /// Ignore the override after this long: a number and s, m, h, d or w (30d). Default: never.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    expires: Option<u64>,
}

#[derive(Args)]
struct ServeArgs {
    /// Config file (TOML). Without it the embedded default is used.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:5000 (port 0 picks a free port).
    #[arg(long)]
    listen: Option<String>,
    /// Directory for portcullis' state.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// An upstream as HOST=URL, e.g. docker.io=http://127.0.0.1:5001; repeatable. Replaces the URL of
    /// a configured upstream of that host, or adds one.
    #[arg(long = "upstream", value_name = "HOST=URL")]
    upstreams: Vec<String>,
    /// The upstream for names that carry no registry host.
    #[arg(long)]
    default_upstream: Option<String>,
    /// Log format (the level comes from RUST_LOG, default info).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Directory of the blob and manifest cache (default <data-dir>/cache).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Most bytes of blobs the cache keeps, e.g. 20GiB.
    #[arg(long, value_name = "SIZE")]
    cache_max_size: Option<portcullis::config::ByteSize>,
    /// How long a tag's digest is served without asking the upstream, e.g. 5m, 0s.
    #[arg(long, value_name = "DURATION")]
    tag_ttl: Option<portcullis::config::HumanDuration>,
    /// Keep nothing on disk: every pull goes upstream.
    #[arg(long)]
    no_cache: bool,
}

const SCAN_HELP: &str = "\
Targets:
  oci:DIR[:TAG]                        an OCI image layout (TAG: its ref.name annotation)
  DIR                                  the same, when DIR holds index.json or oci-layout
  docker-archive:FILE[:REPO:TAG]       a docker save tarball (REPO:TAG picks one of several)
  FILE                                 the same, for any other file
  docker://[HOST/]REPO[:TAG|@DIGEST]   a remote image, routed like a pull through the proxy

Exit status:
  0  allow      the proxy would serve the image
  1  warn       it would serve it with a warning (score at or above warn_score)
  2  block      it would refuse it (score at or above block_score)
  3  error      the image could not be scanned (unreadable input, missing tag, digest
                mismatch, upstream failure, bad config)
  64 usage      the command line is wrong (unknown flag, missing target)";

#[derive(Args)]
struct ScanArgs {
    /// The image to scan (see Targets below).
    image: String,
    /// Judge a local image under this repository name too (`docker.io/acme/app`, `nginx`), as
    /// if pulled by that name through the proxy.
    #[arg(long, value_name = "REPO")]
    name: Option<String>,
    /// Output: a table for people, or one JSON document (image, decision, score, findings,
    /// images, ruleset_hash, engine_version).
    #[arg(long, value_enum, default_value_t = ScanFormat::Table)]
    format: ScanFormat,
    /// Which image of a multi-platform index to scan (default linux/amd64, or the only one).
    #[arg(
        long,
        value_name = "OS/ARCH[/VARIANT]",
        conflicts_with = "all_platforms"
    )]
    platform: Option<portcullis::scan::PlatformSpec>,
    /// Scan every image of a multi-platform index; the worst decides.
    #[arg(long)]
    all_platforms: bool,
    /// Config file (TOML): upstreams, rule and popular-name files, policy thresholds. Without it
    /// the embedded default is used.
    #[arg(long)]
    config: Option<PathBuf>,
    /// An upstream as HOST=URL, as for serve; repeatable.
    #[arg(long = "upstream", value_name = "HOST=URL")]
    upstreams: Vec<String>,
    /// The upstream for names that carry no registry host.
    #[arg(long)]
    default_upstream: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScanFormat {
    Table,
    Json,
}

fn main() -> anyhow::Result<()> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; real usage errors get their own
            // status, since clap's 2 would read as `scan`'s "block".
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                portcullis::scan::EXIT_USAGE
            } else {
                0
            });
        }
    };
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Scan(args) => std::process::exit(scan(&args)),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match Config::load(&file).and_then(|c| c.check_secrets().map(|()| c)) {
            Ok(c) => {
                println!("{}: ok", file.display());
                println!("{}", c.cache_summary());
                Ok(())
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                std::process::exit(1);
            }
        },
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            print!("{}", portcullis::config::DEFAULT_CONFIG);
            Ok(())
        }
        Command::Override { store, command } => override_command(&store, command),
        Command::Health(args) => std::process::exit(health(&args)),
    }
}

/// Runs `portcullis health`: 0 when the URL answers 200 within the timeout, else 1, with the
/// reason on stderr (`docker inspect` shows it). Goes straight to the URL: no proxy from the
/// environment, no redirects followed.
fn health(args: &HealthArgs) -> i32 {
    let probe = async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(args.timeout.0)
            .build()?;
        Ok::<_, reqwest::Error>(client.get(&args.url).send().await?.status())
    };
    let status = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(probe)
                .map_err(|e| format!("{:#}", anyhow::Error::from(e)))
        });
    match status {
        Ok(reqwest::StatusCode::OK) => {
            println!("{}: 200 OK", args.url);
            0
        }
        Ok(status) => {
            eprintln!("portcullis health: {}: {status}", args.url);
            1
        }
        Err(e) => {
            eprintln!("portcullis health: {}: {e}", args.url);
            1
        }
    }
}

/// The config file (or the embedded default) with `--data-dir` applied.
/// Not validated yet: the caller applies its flags first.
fn base_config(file: Option<&Path>, data_dir: Option<&Path>) -> anyhow::Result<Config> {
    let mut config = match file {
        Some(path) => Config::read(path)?,
        None => Config::embedded(),
    };
    if let Some(dir) = data_dir {
        config.server.data_dir = dir.to_path_buf();
    }
    Ok(config)
}

fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = base_config(args.config.as_deref(), args.data_dir.as_deref())?;
    if let Some(listen) = &args.listen {
        config.server.listen = listen.clone();
    }
    set_upstreams(
        &mut config,
        &args.upstreams,
        args.default_upstream.as_deref(),
    )?;
    if let Some(f) = args.log_format {
        config.server.log_format = f;
    }
    if let Some(dir) = &args.cache_dir {
        config.cache.path = dir.clone();
    }
    if let Some(size) = args.cache_max_size {
        config.cache.max_size = size;
    }
    if let Some(ttl) = args.tag_ttl {
        config.cache.tag_ttl = ttl;
    }
    if args.no_cache {
        config.cache.enabled = false;
    }
    config.validate()?;
    Ok(config)
}

/// Applies `--upstream HOST=URL` (replacing a configured upstream's URL, or adding one) and
/// `--default-upstream`.
fn set_upstreams(
    config: &mut Config,
    specs: &[String],
    default: Option<&str>,
) -> anyhow::Result<()> {
    for spec in specs {
        let (host, url) = spec
            .split_once('=')
            .with_context(|| format!("--upstream {spec:?}: expected HOST=URL"))?;
        match config
            .upstreams
            .iter_mut()
            .find(|(h, _)| h.eq_ignore_ascii_case(host))
        {
            Some((_, up)) => up.url = url.to_string(),
            None => {
                config
                    .upstreams
                    .insert(host.to_string(), UpstreamConfig::anonymous(url));
            }
        }
    }
    if let Some(d) = default {
        config.upstream.default = d.to_string();
    }
    Ok(())
}

/// Logs go to stderr at `RUST_LOG`'s level, else `default_level`.
fn init_tracing(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Pretty => builder.init(),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    init_tracing(config.server.log_format, "info");
    tokio::runtime::Runtime::new()?.block_on(run(config))
}

/// Runs `portcullis scan`; returns its exit status (see `SCAN_HELP`).
fn scan(args: &ScanArgs) -> i32 {
    use portcullis::scan::{self, Platforms, ScanOptions, Target};
    // Only upstream retries and the like are logged, and only at warn: stdout is the report's.
    init_tracing(LogFormat::Pretty, "warn");
    let fail = |e: &dyn std::fmt::Display, code: i32| {
        eprintln!("portcullis scan: {e}");
        code
    };
    let target = match Target::parse(&args.image) {
        Ok(t) => t,
        Err(e) => return fail(&e, e.exit_code()),
    };
    let config = match scan_config(args) {
        Ok(c) => c,
        Err(e) => return fail(&format!("{e:#}"), scan::EXIT_ERROR),
    };
    let scanner = match portcullis::scanner(&config) {
        Ok(s) => s,
        Err(e) => return fail(&format!("{e:#}"), scan::EXIT_ERROR),
    };
    let options = ScanOptions {
        name: args.name.clone(),
        platforms: match (&args.platform, args.all_platforms) {
            (_, true) => Platforms::All,
            (Some(p), false) => Platforms::One(p.clone()),
            (None, false) => Platforms::Default,
        },
    };
    match scan::run(&scanner, &config, &target, &options) {
        Ok(report) => {
            match args.format {
                ScanFormat::Table => print!("{}", report.table()),
                ScanFormat::Json => println!("{}", report.to_json()),
            }
            report.exit_code()
        }
        Err(e) => fail(&e, e.exit_code()),
    }
}

fn scan_config(args: &ScanArgs) -> anyhow::Result<Config> {
    let mut config = base_config(args.config.as_deref(), None)?;
    set_upstreams(
        &mut config,
        &args.upstreams,
        args.default_upstream.as_deref(),
    )?;
    config.validate()?;
    Ok(config)
}

async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.server.data_dir)
        .with_context(|| format!("creating data dir {}", config.server.data_dir.display()))?;
    // Held for the whole run: sled lets one process open the store, so `portcullis override`
    // refuses to run beside a live proxy instead of racing it.
    let store = SledStore::open(&config.store_path(), config.store.cache_capacity_bytes)
        .with_context(|| {
            format!(
                "opening the verdict store {}",
                config.store_path().display()
            )
        })?;
    let store = Arc::new(store);
    let app = portcullis::app(&config, store.clone())?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr()?)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, upstreams = ?config.upstreams.keys().collect::<Vec<_>>(), default = %config.upstream.default, "portcullis listening");
    let limits = portcullis::server::listen::Limits::of(&config.server);
    let draining =
        portcullis::server::listen::serve(listener, app, limits, shutdown_signal()).await;
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    tracing::info!(
        grace_seconds = grace.as_secs(),
        "shutting down: no new connections, waiting for pulls in flight"
    );
    if tokio::time::timeout(grace, draining).await.is_err() {
        tracing::warn!("grace period over: closing the pulls still in flight");
    }
    store.flush().context("flushing the verdict store")?;
    Ok(())
}

fn override_command(args: &StoreArgs, command: OverrideCommand) -> anyhow::Result<()> {
    let config = base_config(args.config.as_deref(), args.data_dir.as_deref())?;
    config.validate()?;
    let now = portcullis::store::now_unix();
    match command {
        OverrideCommand::Add(add) => {
            // Checked before the store is touched: a refused override creates nothing.
            let new = new_override(&config, *add, now)?;
            let o = open_store(&config, false)?.add_override(new)?;
            println!(
                "added override {}: {} {} (expires {})",
                o.id,
                o.action,
                o.target,
                expiry(o.expires_unix)
            );
        }
        OverrideCommand::List { json } => {
            let overrides = open_store(&config, true)?.list_overrides()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&overrides)?);
                return Ok(());
            }
            println!("ID\tACTION\tTARGET\tAUTHOR\tCREATED\tEXPIRES\tREASON");
            for o in overrides {
                let mut expires = expiry(o.expires_unix);
                if o.is_expired(now) {
                    expires = format!("expired {expires}");
                }
                let created =
                    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(o.created_unix));
                println!(
                    "{}\t{}\t{}\t{}\t{created}\t{expires}\t{}",
                    o.id, o.action, o.target, o.author, o.reason
                );
            }
        }
        OverrideCommand::Remove { id } => {
            let o = open_store(&config, true)?.remove_override(id)?;
            println!("removed override {}: {} {}", o.id, o.action, o.target);
        }
        OverrideCommand::Prune => {
            for o in open_store(&config, true)?.prune_overrides(now)? {
                println!(
                    "removed expired override {}: {} {}",
                    o.id, o.action, o.target
                );
            }
        }
    }
    Ok(())
}

/// The verdict store the config names. Only `add` may create it: reading a store that is not there
/// means a wrong `--data-dir` or `--config`.
fn open_store(config: &Config, must_exist: bool) -> anyhow::Result<SledStore> {
    let path = config.store_path();
    if must_exist && !path.exists() {
        anyhow::bail!(
            "there is no verdict store at {} (check --data-dir and --config)",
            path.display()
        );
    }
    Ok(SledStore::open(&path, config.store.cache_capacity_bytes)?)
}

fn new_override(config: &Config, add: AddOverride, now: u64) -> anyhow::Result<NewOverride> {
    let target = match (add.repo, add.digest) {
        (Some(pattern), _) => {
            check_pattern_host(config, &pattern)?;
            OverrideTarget::Repo(pattern)
        }
        (None, Some(digest)) => OverrideTarget::Digest(digest),
        (None, None) => unreachable!("clap requires --repo or --digest"),
    };
    let new = NewOverride {
        target,
        action: if add.allow {
            OverrideAction::Allow
        } else {
            OverrideAction::Deny
        },
        reason: add.reason,
        author: add.author,
        created_unix: now,
        expires_unix: add.expires.map(|secs| now.saturating_add(secs)),
    };
    new.validate().map_err(anyhow::Error::msg)?;
    Ok(new)
}

/// A repository pattern names a configured upstream by its own host (verdicts and overrides are
/// keyed by it), unless its host part is a glob.
fn check_pattern_host(config: &Config, pattern: &RepoPattern) -> anyhow::Result<()> {
    let Some(host) = pattern.host() else {
        return Ok(());
    };
    if config
        .upstreams
        .keys()
        .any(|h| h.eq_ignore_ascii_case(host))
    {
        return Ok(());
    }
    if let Some((canonical, _)) = config
        .upstreams
        .iter()
        .find(|(_, up)| up.aliases.iter().any(|a| a.eq_ignore_ascii_case(host)))
    {
        anyhow::bail!(
            "--repo {pattern}: {host} is another name of {canonical}; write {canonical}/..."
        );
    }
    let known: Vec<&str> = config.upstreams.keys().map(String::as_str).collect();
    anyhow::bail!(
        "--repo {pattern}: {host} is not a configured upstream ({}); a pattern starts with the registry host",
        known.join(", ")
    )
}

fn expiry(expires_unix: Option<u64>) -> String {
    match expires_unix {
        Some(secs) => httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs)),
        None => "never".into(),
    }
}

/// `30d`, `12h`, `90m`, `3600s`, `2w` (or `1w 2d`, as humantime reads them) as whole seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(s).map_err(|e| {
        format!("{s:?}: {e}; write a number and a unit: s, m, h, d or w (e.g. 30d)")
    })?;
    match d.as_secs() {
        0 => Err(format!("{s:?}: must be at least a second")),
        secs => Ok(secs),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("12h"), Ok(12 * 3600));
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert_eq!(parse_duration("2w"), Ok(14 * 86_400));
        assert_eq!(parse_duration("5s"), Ok(5));
        assert_eq!(parse_duration("1w 2d"), Ok(9 * 86_400));
        assert_eq!(parse_duration("1.5d"), Ok(36 * 3600));
        for bad in ["", "30", "d", "-1d", "0h", "30x", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
