//! The `opsflow` binary: `dev` (embedded default), `serve` (production), and the
//! client subcommands (`append`, `read`, `tail`, `stream`, `kpis`, `compliance`,
//! `views rebuild`, `audit verify`) and `definitions check`.

mod client;
mod definitions;
mod demo;
mod output;
mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// mimalloc: views decode and apply events with many small allocations, which
/// glibc's allocator serves markedly slower (measured by `opsflow-bench --only views`).
/// mimalloc 2 (the workspace's `v2` feature), not the crate's default 3: the views
/// rebuild ran 3-5% faster with it (interleaved runs, 2026-11-23), as-of queries the same.
/// Built not to ask for transparent huge pages (the workspace's `no_thp` feature): an
/// as-of query decodes a snapshot into fresh memory, and the kernel zeroing 2 MB
/// pages for it was half of the decode and most of the p99 (as-of KPIs p99 300-390
/// ms with huge pages, 187-196 ms without, same machine, interleaved runs). On a
/// host whose THP setting is `always` rather than `madvise`, set
/// `MIMALLOC_ALLOW_THP=0` for the same effect.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use opsflow_server::{Config, Server};
use output::say;

#[derive(Parser)]
#[command(
    name = "opsflow",
    version,
    about = "Event-sourced workflow orchestration for business operations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the embedded default: sled under ./.opsflow, gRPC + HTTP on 127.0.0.1:7070.
    Dev(DevArgs),
    /// Run for production from a TOML config (OPSFLOW_* variables override it).
    Serve {
        /// The config file (see deploy/opsflow.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Append one event to a stream.
    Append(client::AppendArgs),
    /// Read events from the whole log or one stream.
    Read(client::ReadArgs),
    /// Follow the log live (catch-up first with --from).
    Tail(client::TailArgs),
    /// Show what the log knows of one stream.
    Stream(client::StreamArgs),
    /// KPIs, live or as of a past moment (--as-of POSITION|TIME).
    Kpis(views::KpisArgs),
    /// Compliance controls: status, violations with evidence, pending obligations.
    Compliance(views::ComplianceArgs),
    /// Manage views (rebuild).
    Views {
        #[command(subcommand)]
        command: views::ViewsCommand,
    },
    /// Definitions (KPIs and controls).
    Definitions {
        #[command(subcommand)]
        command: definitions::DefinitionsCommand,
    },
    /// Auditing.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain over the whole log; exits with 2 when it does not verify.
    Verify(client::VerifyArgs),
}

#[derive(Args)]
struct DevArgs {
    /// Data directory.
    #[arg(long, default_value = ".opsflow")]
    data: PathBuf,
    /// Address for gRPC and HTTP (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Also run the built-in generator of operational events.
    #[arg(long)]
    demo: bool,
    /// Demo events per second.
    #[arg(long, default_value_t = 20)]
    demo_rate: u32,
    /// Demo random seed (the same seed gives the same events).
    #[arg(long, default_value_t = 42)]
    demo_seed: u64,
    /// KPI and control definitions (YAML), reloaded when they change [default:
    /// ./deploy/definitions when it exists, else the built-in set].
    #[arg(long, value_name = "DIR")]
    definitions: Option<PathBuf>,
    /// Also ingest from, answer requests on, and publish to this NATS server
    /// (JetStream enabled), e.g. nats://127.0.0.1:4222; the servers of a cluster
    /// comma-separated, e.g. nats://n1:4222,nats://n2:4222.
    #[arg(long, value_name = "URL[,URL...]")]
    nats: Option<String>,
}

/// How client subcommands print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// Options every client subcommand takes.
#[derive(Args, Clone)]
pub struct ClientOpts {
    /// The opsflow server.
    #[arg(long, env = "OPSFLOW_SERVER", default_value = "http://127.0.0.1:7070", global = true)]
    pub server: String,
    /// Output format.
    #[arg(
        long,
        short,
        value_enum,
        env = "OPSFLOW_OUTPUT",
        default_value = "table",
        global = true
    )]
    pub output: OutputFormat,
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPSFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: a log redirected to a file stays plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn main() -> ExitCode {
    let cli = match Cli::parse().command {
        // Offline and synchronous: no runtime needed.
        Command::Definitions { command } => return definitions::run(command),
        command => Cli { command },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json_errors = cli.command.output() == Some(OutputFormat::Json);
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Dev(args) => {
                init_tracing("info");
                dev(args).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Serve { config } => {
                init_tracing("info");
                let config = Config::load(Some(&config), std::env::vars())?;
                serve(config).await.map(|()| ExitCode::SUCCESS)
            }
            command => {
                init_tracing("warn");
                match command {
                    Command::Append(a) => client::append(a).await,
                    Command::Read(a) => client::read(a).await,
                    Command::Tail(a) => client::tail(a).await,
                    Command::Stream(a) => client::stream(a).await,
                    Command::Audit {
                        command: AuditCommand::Verify(a),
                    } => client::verify(a).await,
                    Command::Kpis(a) => views::kpis(a).await,
                    Command::Compliance(a) => views::compliance(a).await,
                    Command::Views { command } => views::views(command).await,
                    Command::Dev(_) | Command::Serve { .. } | Command::Definitions { .. } => unreachable_command(),
                }
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) if json_errors => {
            eprintln!("{}", client::error_json(&e));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Command {
    /// The output format of a client subcommand.
    fn output(&self) -> Option<OutputFormat> {
        let opts = match self {
            Command::Append(a) => &a.opts,
            Command::Read(a) => &a.opts,
            Command::Tail(a) => &a.opts,
            Command::Stream(a) => &a.opts,
            Command::Kpis(a) => &a.opts,
            Command::Compliance(a) => &a.opts,
            Command::Audit {
                command: AuditCommand::Verify(a),
            } => &a.opts,
            Command::Views {
                command: views::ViewsCommand::Rebuild { opts, .. },
            } => opts,
            Command::Dev(_) | Command::Serve { .. } | Command::Definitions { .. } => return None,
        };
        Some(opts.output)
    }
}

fn unreachable_command() -> anyhow::Result<ExitCode> {
    anyhow::bail!("internal: command dispatched twice")
}

async fn dev(args: DevArgs) -> anyhow::Result<()> {
    // Validated once the flags are applied: `--nats` replaces the environment's URLs.
    let mut config = Config::load_unvalidated(None, std::env::vars())?;
    config.data_dir = args.data;
    config.listen = args.listen;
    config.demo.enabled = args.demo;
    config.demo.rate = args.demo_rate;
    config.demo.seed = args.demo_seed;
    config.definitions.dir = args.definitions.or_else(|| {
        let shipped = PathBuf::from("deploy/definitions");
        shipped.is_dir().then_some(shipped)
    });
    let nats_flag = args.nats.is_some();
    if let Some(urls) = args.nats {
        // The URLs only: `OPSFLOW_NATS__*` overrides of the rest still apply.
        config.nats.get_or_insert_with(opsflow_server::NatsConfig::default).urls =
            opsflow_server::NatsConfig::split_urls(&urls);
    }
    config.validate().map_err(|e| match e {
        // The URLs came from the flag: name it, not the config key.
        opsflow_server::ConfigError::Invalid { key, message } if nats_flag && key == "nats.urls" => {
            anyhow::anyhow!("--nats: {message}")
        }
        e => e.into(),
    })?;
    serve(config).await
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = Server::start(&config).await?;
    let url = format!("http://{}", server.addr());
    say(format_args!("opsflow is running"));
    say(format_args!("  data      {}", config.data_dir.display()));
    say(format_args!(
        "  gRPC      {url}  (opsflow.v1.EventLog, opsflow.v1.Views, opsflow.v1.Audit, health, reflection)"
    ));
    say(format_args!("  HTTP      {url}/v1/events  {url}/v1/streams/{{stream}}"));
    say(format_args!(
        "  views     {url}/v1/kpis  {url}/v1/compliance  (opsflow.v1.Views; opsflow kpis, opsflow compliance)"
    ));
    match &config.definitions.dir {
        Some(dir) => say(format_args!("  defs      {} (reloaded on change)", dir.display())),
        None => say(format_args!(
            "  defs      built-in default set (--definitions DIR to use your own)"
        )),
    }
    say(format_args!("  health    {url}/healthz  {url}/readyz  {url}/metrics"));
    if let Some(nats) = &config.nats {
        say(format_args!(
            "  NATS      {}  ingest {} -> stream {}",
            nats.display_urls(),
            nats.ingest.subjects.join(","),
            nats.ingest.stream
        ));
        say(format_args!(
            "            requests {}  outbound {}.<type>  dead letters {}.<reason>",
            nats.request_reply.subject, nats.outbound.subject_prefix, nats.dead_letters.subject_prefix
        ));
    }
    say(format_args!("  try       opsflow tail --server {url}"));
    if config.demo.enabled {
        say(format_args!(
            "  demo      {} events/s, seed {}",
            config.demo.rate, config.demo.seed
        ));
        let token = server.shutdown_token();
        server.tasks().spawn(
            "demo",
            demo::run(url.clone(), config.demo.rate, config.demo.seed, token),
        );
    }
    say(format_args!("press Ctrl-C to stop"));
    server.run_until_signal().await?;
    say(format_args!("opsflow stopped cleanly"));
    Ok(())
}
