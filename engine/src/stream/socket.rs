//! A Redis connection whose replies the engine reads itself, piece by piece, for the one
//! command whose reply can be any size: the reader's `XREADGROUP` (see `reader/plain.rs`).
//!
//! redis-rs parses a reply whole before handing it over, with no limit on a bulk string's
//! length, so an entry of hundreds of megabytes would be held whole. Here the caller reads a
//! reply header by header and decides, for each bulk string, from the length its header
//! announces, whether to keep it ([`RespSocket::bulk`]) or pass it through a hash without
//! holding it ([`RespSocket::stream_bulk`]).
//!
//! It connects as [`super::connect`] does, from the same URL: TCP, TLS (`rediss://`, roots
//! from `cacert=` or the system, `#insecure` skipping verification) or a Unix socket; `AUTH`
//! with the URL's user and password, `SELECT` of its database. It speaks RESP2 (it never sends
//! `HELLO`).
//!
//! A reply is read to its end or the socket is dropped: a caller that stops half way (an
//! error, a cancelled future) must not use it again, as the rest of the reply is still on the
//! wire. [`super::reader::GroupReader`] takes it out of its slot for each command and puts it
//! back only after a whole reply.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use redis::{Cmd, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisError, RedisResult};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;

use super::connect::ca_file;
use crate::runtime::tls::{self, EncryptOnly};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much is read from the connection at a time when nothing larger is wanted.
const CHUNK: usize = 64 << 10;
/// The longest header line accepted (a header is a type byte, a number and CRLF; a server
/// error's line is a sentence).
const MAX_LINE: usize = 64 << 10;

trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

/// The start of a reply, or of one element of an array.
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// `*n`; `None` for a null array (`*-1`).
    Array(Option<usize>),
    /// `$n`; `None` for a null bulk string (`$-1`).
    Bulk(Option<usize>),
    /// `+text` or `:n`, as text.
    Simple(String),
}

pub struct RespSocket {
    io: Box<dyn Io>,
    /// Bytes read from the connection and not yet taken.
    buf: BytesMut,
}

impl RespSocket {
    /// Connect to `redis_url` and authenticate.
    pub async fn connect(redis_url: &str) -> RedisResult<RespSocket> {
        let info = redis_url.into_connection_info()?;
        let io = tokio::time::timeout(CONNECT_TIMEOUT, open(info.addr(), redis_url))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connecting to Redis timed out"))??;
        let mut socket = RespSocket { io, buf: BytesMut::with_capacity(CHUNK) };
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            socket.command(auth.arg(password)).await?;
        }
        if settings.db() != 0 {
            socket.command(redis::cmd("SELECT").arg(settings.db())).await?;
        }
        Ok(socket)
    }

    /// Send a command whose reply is one short line (`+OK`), and read that reply.
    async fn command(&mut self, cmd: &Cmd) -> RedisResult<String> {
        self.send(cmd).await?;
        match self.header().await? {
            Header::Simple(text) => Ok(text),
            other => Err(unexpected(&format!("{other:?}"))),
        }
    }

    pub async fn send(&mut self, cmd: &Cmd) -> RedisResult<()> {
        self.io.write_all(&cmd.get_packed_command()).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// The next header. A server error (`-CODE detail`) is returned as the error it is.
    pub async fn header(&mut self) -> RedisResult<Header> {
        let line = loop {
            if let Some(end) = memchr::memchr(b'\n', &self.buf) {
                break self.buf.split_to(end + 1);
            }
            if self.buf.len() > MAX_LINE {
                return Err(unexpected("a header line longer than 64 KiB"));
            }
            self.fill().await?;
        };
        let Some(body) = line.strip_suffix(b"\r\n") else { return Err(unexpected("a line not ended by CRLF")) };
        let (kind, rest) = body.split_first().ok_or_else(|| unexpected("an empty line"))?;
        let length = || -> RedisResult<Option<usize>> {
            match rest {
                b"-1" => Ok(None),
                digits => number(digits).map(Some).ok_or_else(|| unexpected("a bad length")),
            }
        };
        match kind {
            b'*' => Ok(Header::Array(length()?)),
            b'$' => Ok(Header::Bulk(length()?)),
            b'+' | b':' => Ok(Header::Simple(String::from_utf8_lossy(rest).into_owned())),
            // redis-rs's own parser turns the line into its error (code, detail).
            b'-' => Err(redis::parse_redis_value(&line)?.extract_error().err().unwrap_or_else(|| unexpected("error"))),
            _ => Err(unexpected("a RESP3 or unknown reply type")),
        }
    }

    /// A bulk string's `len` bytes, kept (they share the read buffer's allocation).
    pub async fn bulk(&mut self, len: usize) -> RedisResult<Bytes> {
        while self.buf.len() < len + 2 {
            self.buf.reserve(len + 2 - self.buf.len());
            self.fill().await?;
        }
        let body = self.buf.split_to(len).freeze();
        self.crlf()?;
        Ok(body)
    }

    /// A bulk string's `len` bytes handed to `sink` a piece at a time, never held whole.
    pub async fn stream_bulk(&mut self, len: usize, mut sink: impl FnMut(&[u8])) -> RedisResult<()> {
        let mut left = len;
        while left > 0 {
            if self.buf.is_empty() {
                self.fill().await?;
            }
            let n = left.min(self.buf.len());
            sink(&self.buf[..n]);
            self.buf.advance(n);
            left -= n;
        }
        while self.buf.len() < 2 {
            self.fill().await?;
        }
        self.crlf()
    }

    /// The next element, whatever it is, read and dropped (arrays element by element).
    pub async fn skip(&mut self) -> RedisResult<()> {
        let mut elements = 1usize;
        while elements > 0 {
            elements -= 1;
            match self.header().await? {
                Header::Array(Some(n)) => elements += n,
                Header::Bulk(Some(len)) => self.stream_bulk(len, |_| {}).await?,
                Header::Array(None) | Header::Bulk(None) | Header::Simple(_) => {}
            }
        }
        Ok(())
    }

    fn crlf(&mut self) -> RedisResult<()> {
        if self.buf.len() < 2 || &self.buf[..2] != b"\r\n" {
            return Err(unexpected("a bulk string not ended by CRLF"));
        }
        self.buf.advance(2);
        Ok(())
    }

    /// Read what the connection has, at least one byte.
    async fn fill(&mut self) -> RedisResult<()> {
        if self.buf.capacity() - self.buf.len() < CHUNK / 4 {
            self.buf.reserve(CHUNK);
        }
        if self.io.read_buf(&mut self.buf).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "Redis closed the connection").into());
        }
        Ok(())
    }
}

async fn open(addr: &ConnectionAddr, redis_url: &str) -> RedisResult<Box<dyn Io>> {
    match addr {
        ConnectionAddr::Tcp(host, port) => {
            let tcp = TcpStream::connect((host.as_str(), *port)).await?;
            tcp.set_nodelay(true)?;
            Ok(Box::new(tcp))
        }
        ConnectionAddr::TcpTls { host, port, insecure, .. } => {
            let config = tls_config(*insecure, ca_file(redis_url).as_deref())?;
            let name = ServerName::try_from(host.clone())?;
            let tcp = TcpStream::connect((host.as_str(), *port)).await?;
            tcp.set_nodelay(true)?;
            Ok(Box::new(TlsConnector::from(Arc::new(config)).connect(name, tcp).await?))
        }
        ConnectionAddr::Unix(path) => Ok(Box::new(UnixStream::connect(path).await?)),
        _ => Err(RedisError::from((ErrorKind::InvalidClientConfig, "unsupported Redis address"))),
    }
}

/// As redis-rs verifies for [`super::connect`]: against the `cacert=` file alone when given,
/// else the system's roots, the host name checked; nothing checked with `#insecure`.
fn tls_config(insecure: bool, ca_file: Option<&str>) -> RedisResult<ClientConfig> {
    let provider = tls::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| RedisError::from((ErrorKind::InvalidClientConfig, "TLS setup", e.to_string())))?;
    if insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth());
    }
    let roots = tls::roots(ca_file)
        .map_err(|e| RedisError::from((ErrorKind::InvalidClientConfig, "cannot read the cacert file", e)))?;
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// A decimal length, without sign.
fn number(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0usize, |n, d| d.is_ascii_digit().then(|| n * 10 + (d - b'0') as usize))
}

pub fn unexpected(what: &str) -> RedisError {
    RedisError::from((ErrorKind::Parse, "unexpected reply from Redis", what.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDIS: &str = "redis://127.0.0.1:6379";

    #[tokio::test]
    async fn it_selects_the_urls_database_and_reports_server_errors_by_code() {
        let mut socket = RespSocket::connect(&format!("{REDIS}/3")).await.expect("the local Redis");
        socket.send(redis::cmd("CLIENT").arg("INFO")).await.unwrap();
        let Header::Bulk(Some(len)) = socket.header().await.unwrap() else { panic!("a bulk string") };
        let info = socket.bulk(len).await.unwrap();
        assert!(String::from_utf8_lossy(&info).contains(" db=3 "), "{info:?}");
        let missing = format!("rps_unit_socket_{}", std::process::id());
        let read =
            redis::cmd("XREADGROUP").arg("GROUP").arg("g").arg("c").arg("STREAMS").arg(&missing).arg(">").clone();
        socket.send(&read).await.unwrap();
        let error = socket.header().await.unwrap_err();
        assert_eq!(error.code(), Some("NOGROUP"), "{error}");
        // The connection is still in step after an error reply; skip() reads nested arrays.
        socket.send(redis::cmd("COMMAND").arg("INFO").arg("GET").arg("SET")).await.unwrap();
        socket.skip().await.unwrap();
        socket.send(&redis::cmd("PING")).await.unwrap();
        assert_eq!(socket.header().await.unwrap(), Header::Simple("PONG".into()));
    }
}
