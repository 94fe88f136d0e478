//! TLS for PostgreSQL connections, as libpq's `sslmode` and `sslrootcert` describe it, over
//! rustls. tokio-postgres knows only `disable`, `prefer` and `require`, and neither
//! `sslrootcert` nor the verifying modes, so those are taken out of the connection string
//! here and turned into a rustls configuration:
//!
//! | sslmode | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | no | – |
//! | `prefer` (the default, as in libpq) | if the server offers TLS | no |
//! | `require` | yes | no; against `sslrootcert` when one is given (as libpq does) |
//! | `verify-ca` | yes | chains to a trusted root |
//! | `verify-full` | yes | chains to a trusted root and names the host |
//!
//! Trusted roots: the PEM file `sslrootcert` names, or the system's store (also
//! `sslrootcert=system`).

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::ClientConfig;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::runtime::tls::{self, ChainOnly, EncryptOnly};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS parameters of a connection string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsParams {
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file of trusted roots, or `system`.
    pub root_cert: Option<String>,
}

/// Split a connection string (URL or key=value) into what tokio-postgres reads and the TLS
/// parameters it does not.
pub fn split(connection: &str) -> Result<(String, TlsParams), String> {
    let url = connection.starts_with("postgres://") || connection.starts_with("postgresql://");
    let (rest, taken) = if url { take_from_query(connection) } else { take_from_conninfo(connection)? };
    let mut params = TlsParams { mode: SslMode::Prefer, root_cert: None };
    let mut mode_given = None;
    for (key, value) in taken {
        match key.as_str() {
            "sslmode" => mode_given = Some(value),
            _ => params.root_cert = Some(value),
        }
    }
    params.mode = match mode_given.as_deref() {
        None | Some("prefer") => SslMode::Prefer,
        Some("disable") => SslMode::Disable,
        Some("require") => SslMode::Require,
        Some("verify-ca") => SslMode::VerifyCa,
        Some("verify-full") => SslMode::VerifyFull,
        Some(other) => {
            return Err(format!("sslmode={other}: expected disable, prefer, require, verify-ca or verify-full"))
        }
    };
    // tokio-postgres decides whether TLS is attempted and required; rustls decides the rest.
    let for_driver = match params.mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        _ => "require",
    };
    let rest = if url {
        let sep = if rest.contains('?') { '&' } else { '?' };
        format!("{rest}{sep}sslmode={for_driver}")
    } else {
        format!("{rest} sslmode={for_driver}")
    };
    Ok((rest, params))
}

const TAKEN: [&str; 2] = ["sslmode", "sslrootcert"];

fn take_from_query(url: &str) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_owned(), Vec::new()) };
    let (mut kept, mut taken) = (Vec::new(), Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) if TAKEN.contains(&k) => taken.push((k.to_owned(), percent_decode(v))),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    (rest, taken)
}

fn take_from_conninfo(conninfo: &str) -> Result<(String, Vec<(String, String)>), String> {
    let (mut kept, mut taken) = (Vec::new(), Vec::new());
    let mut rest = conninfo.trim_start();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("expected key=value in the connection string near {:?}", first_word(rest)))?;
        let key = rest[..eq].trim().to_owned();
        let (value, after) = conninfo_value(rest[eq + 1..].trim_start())?;
        if TAKEN.contains(&key.as_str()) {
            taken.push((key, value));
        } else {
            kept.push(format!("{key}='{}'", value.replace('\\', "\\\\").replace('\'', "\\'")));
        }
        rest = after.trim_start();
    }
    Ok((kept.join(" "), taken))
}

/// A conninfo value (single-quoted with `\` escapes, or up to whitespace) and what follows.
fn conninfo_value(s: &str) -> Result<(String, &str), String> {
    let Some(quoted) = s.strip_prefix('\'') else {
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        return Ok((s[..end].to_owned(), &s[end..]));
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => value.extend(chars.next().map(|(_, c)| c)),
            '\'' => return Ok((value, &quoted[i + 1..])),
            c => value.push(c),
        }
    }
    Err("unterminated quoted value in the connection string".into())
}

fn first_word(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or(s)
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let hex = b.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The rustls connector for `params`.
pub fn connector(params: &TlsParams) -> Result<MakeRustlsConnect, String> {
    let provider = tls::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let verify = match params.mode {
        SslMode::Disable | SslMode::Prefer => None,
        SslMode::Require => params.root_cert.as_ref().map(|_| false),
        SslMode::VerifyCa => Some(false),
        SslMode::VerifyFull => Some(true),
    };
    let config = match verify {
        None => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(EncryptOnly(provider))).with_no_client_auth()
        }
        Some(check_name) => {
            let roots = tls::roots(params.root_cert.as_deref()).map_err(|e| format!("sslrootcert={e}"))?;
            let roots = Arc::new(roots);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| format!("TLS setup: {e}"))?;
            let verifier: Arc<dyn ServerCertVerifier> = if check_name { webpki } else { Arc::new(ChainOnly(webpki)) };
            builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth()
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_urls_and_conninfo() {
        let (rest, p) =
            split("postgres://u:p@db/x?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=a").unwrap();
        assert_eq!(rest, "postgres://u:p@db/x?application_name=a&sslmode=require");
        assert_eq!(p, TlsParams { mode: SslMode::VerifyFull, root_cert: Some("/etc/ca.pem".into()) });
        let (rest, p) = split("postgres://u@db/x").unwrap();
        assert_eq!((rest.as_str(), p.mode), ("postgres://u@db/x?sslmode=prefer", SslMode::Prefer));
        let (rest, p) = split("host=db password='a b\\'c' sslmode=verify-ca sslrootcert='/c a.pem'").unwrap();
        assert_eq!(rest, "host='db' password='a b\\'c' sslmode=require");
        assert_eq!(p, TlsParams { mode: SslMode::VerifyCa, root_cert: Some("/c a.pem".into()) });
        assert!(split("postgres://db/x?sslmode=allow").unwrap_err().contains("expected disable"));
        for (mode, expected) in [("disable", "disable"), ("require", "require")] {
            let (rest, _) = split(&format!("host=db sslmode={mode}")).unwrap();
            assert_eq!(rest, format!("host='db' sslmode={expected}"));
        }
    }
}
