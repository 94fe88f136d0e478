//! What both binaries do around their work: logs on stderr that never print a secret, one
//! clear line and a meaningful exit code when they fail, the listen address resolved up
//! front, and the `health` subcommand.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing_subscriber::EnvFilter;

use super::progress;
use crate::pg::DEFAULT_DATABASE_URL;
use crate::runtime::exit::{Fatal, EXIT_FAILED};
use crate::runtime::redact::{register, scrub};

/// Logging settings, for every subcommand.
#[derive(Args, Clone, Debug)]
pub struct LogArgs {
    /// Log lines as plain text or as one JSON object each (for log collectors). Filter with
    /// RUST_LOG (default: info, with the migration tools' chatter at warn).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The database alone, for tools that only read or switch it.
#[derive(Args, Clone, Debug)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL (the engine's database, which must exist).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
}

/// Where `health` asks.
#[derive(Args, Clone, Debug)]
pub struct HealthArgs {
    /// The running process's /health URL [default: http://<its metrics address>/health, an
    /// unspecified host such as 0.0.0.0 asked on 127.0.0.1].
    #[arg(long, env = "HEALTH_URL")]
    pub url: Option<String>,
}

impl HealthArgs {
    /// The URL to ask, for a process serving on `metrics_addr`.
    pub fn url(&self, metrics_addr: &str) -> String {
        if let Some(url) = &self.url {
            return url.clone();
        }
        let local = match metrics_addr.parse::<SocketAddr>() {
            Ok(addr) if addr.ip().is_unspecified() => format!("127.0.0.1:{}", addr.port()),
            _ => metrics_addr.to_owned(),
        };
        format!("http://{local}/health")
    }
}

/// Logs through `tracing` on stderr, every line scrubbed of the secrets of `connections` (the
/// URLs the process was given).
pub fn init(format: LogFormat, connections: &[&str]) {
    let _ = FORMAT.set(format);
    for connection in connections {
        register(connection);
    }
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,refinery_core=warn,tokio_postgres=warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| Scrubbed(progress::log_writer()));
    match format {
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => logs.json().init(),
    }
}

/// `health`: ask a running binary's /health; exit 0 when it answers 200, 1 otherwise (what a
/// container's HEALTHCHECK runs: the images have no curl).
pub async fn health(url: &str) -> ExitCode {
    match get(url).await {
        Ok((200, body)) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            println!("{status} {body}");
            ExitCode::from(EXIT_FAILED)
        }
        Err(e) => {
            eprintln!("error: {url}: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// A plain HTTP/1.0 GET of `http://host:port/path`: status and body, within three seconds.
async fn get(url: &str) -> std::io::Result<(u16, String)> {
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "expected http://host:port/path");
    let rest = url.strip_prefix("http://").ok_or_else(invalid)?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let exchange = async {
        let mut socket = tokio::net::TcpStream::connect(host).await?;
        socket.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).await?;
        let mut reply = String::new();
        socket.read_to_string(&mut reply).await?;
        let status = reply.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(invalid)?;
        let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.trim().to_owned()).unwrap_or_default();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 3 s")))
}

/// A writer that masks registered secrets in what passes through it.
struct Scrubbed<W>(W);

impl<W: Write> Write for Scrubbed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The log format [`init`] set up, for [`fail`].
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// End the process for `error`: one line on stderr (a JSON log record with `--log-format
/// json`), no secret in it, and the exit code its kind calls for (README → Exit codes).
pub fn fail(error: anyhow::Error) -> ExitCode {
    let code = error.downcast_ref::<Fatal>().map_or(EXIT_FAILED, Fatal::exit_code);
    let message = scrub(&format!("{error:#}")).into_owned();
    match FORMAT.get() {
        Some(LogFormat::Json) => tracing::error!(exit_code = code, "{message}"),
        _ => eprintln!("error: {message}"),
    }
    ExitCode::from(code)
}

/// `host:port` (a name or an address) to listen on.
pub async fn listen_addr(flag: &str, value: &str) -> Result<SocketAddr, Fatal> {
    let found = tokio::net::lookup_host(value).await.ok().and_then(|mut addrs| addrs.next());
    found.ok_or_else(|| Fatal::Config(format!("{flag} {value}: not a host:port this machine can listen on")))
}

/// What a command's help leaves out, for the binaries' tests: every flag (of the command and
/// of its subcommands) needs a description, and every flag that takes a value needs a
/// default shown, or its description must say what happens without it.
pub fn help_gaps(command: &clap::Command) -> Vec<String> {
    let mut gaps = Vec::new();
    let path = command.get_name().to_owned();
    collect_help_gaps(command, &path, &mut gaps);
    gaps
}

/// Each binary's test of its own command line: clap's consistency checks pass, and the help
/// has no [`help_gaps`]. Panics, naming the gaps, otherwise.
pub fn assert_help_complete(command: clap::Command) {
    command.clone().debug_assert();
    assert_eq!(help_gaps(&command), Vec::<String>::new());
}

fn collect_help_gaps(command: &clap::Command, path: &str, gaps: &mut Vec<String>) {
    for arg in command.get_arguments() {
        let id = arg.get_long().unwrap_or(arg.get_id().as_str());
        if matches!(id, "help" | "version") || arg.is_positional() {
            continue;
        }
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        if help.trim().is_empty() {
            gaps.push(format!("{path} --{id}: no description"));
        }
        let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values()) && !arg.is_required_set();
        let flag = matches!(arg.get_action(), clap::ArgAction::SetTrue | clap::ArgAction::SetFalse);
        if takes_value && !flag && arg.get_default_values().is_empty() && !help.to_lowercase().contains("default") {
            gaps.push(format!("{path} --{id}: no default shown"));
        }
    }
    for sub in command.get_subcommands() {
        if sub.get_about().is_none() {
            gaps.push(format!("{path} {}: no description", sub.get_name()));
        }
        collect_help_gaps(sub, &format!("{path} {}", sub.get_name()), gaps);
    }
}
