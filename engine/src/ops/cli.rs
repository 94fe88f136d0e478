//! What both binaries do around their work: logs that never print a secret, one clear line
//! and a meaningful exit code when they fail, and the listen address resolved up front.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use super::progress;
use crate::runtime::exit::{Fatal, EXIT_FAILED};
use crate::runtime::redact::{register, scrub};

/// Logs through `tracing` (`RUST_LOG`, default `info`), every line scrubbed of the secrets of
/// `connections` (the URLs the process was given).
pub fn init(connections: &[&str]) {
    for connection in connections {
        register(connection);
    }
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(|| Scrubbed(progress::log_writer()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
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

/// End the process for `error`: one line on stderr, no secret in it, and the exit code its
/// kind calls for (README → Exit codes).
pub fn fail(error: anyhow::Error) -> ExitCode {
    let code = error.downcast_ref::<Fatal>().map_or(EXIT_FAILED, Fatal::exit_code);
    eprintln!("error: {}", scrub(&format!("{error:#}")));
    ExitCode::from(code)
}

/// `host:port` (a name or an address) to listen on.
pub async fn listen_addr(flag: &str, value: &str) -> Result<SocketAddr, Fatal> {
    let found = tokio::net::lookup_host(value).await.ok().and_then(|mut addrs| addrs.next());
    found.ok_or_else(|| Fatal::Config(format!("{flag} {value}: not a host:port this machine can listen on")))
}
