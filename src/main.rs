//! The `portcullis` command: `serve` the proxy, `config check` a file.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use portcullis::config::{Config, LogFormat, UpstreamConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A pull-through registry proxy that refuses malicious images"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (with the embedded default config unless --config is given).
    Serve(ServeArgs),
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file; the error names the bad field.
    Check { file: PathBuf },
    /// Print the embedded default config (the documented example).
    Default,
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match Config::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
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
    }
}

fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded(),
    };
    if let Some(listen) = &args.listen {
        config.server.listen = listen.clone();
    }
    if let Some(dir) = &args.data_dir {
        config.server.data_dir = dir.clone();
    }
    for spec in &args.upstreams {
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
    if let Some(d) = &args.default_upstream {
        config.upstream.default = d.clone();
    }
    if let Some(f) = args.log_format {
        config.server.log_format = f;
    }
    config.validate()?;
    Ok(config)
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
    init_tracing(config.server.log_format);
    tokio::runtime::Runtime::new()?.block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.server.data_dir)
        .with_context(|| format!("creating data dir {}", config.server.data_dir.display()))?;
    let app = portcullis::app(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr()?)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, upstreams = ?config.upstreams.keys().collect::<Vec<_>>(), default = %config.upstream.default, "portcullis listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|s| *s).await;
    });
    let mut server = std::pin::pin!(std::future::IntoFuture::into_future(server));
    tokio::select! {
        r = &mut server => return r.context("server failed"),
        () = shutdown_signal() => {}
    }
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    tracing::info!(
        grace_seconds = grace.as_secs(),
        "shutting down: no new connections, waiting for pulls in flight"
    );
    let _ = stop_tx.send(true);
    match tokio::time::timeout(grace, server).await {
        Ok(r) => r.context("server failed")?,
        Err(_) => tracing::warn!("grace period over: closing the pulls still in flight"),
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
