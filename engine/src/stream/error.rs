//! What a Redis error means for the caller.

use redis::{ErrorKind, RedisError};

use crate::runtime::exit::{caused_by, Fatal, Permanence};

/// Setting up a reader failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("stream `{0}` does not exist (a typo? start the producer first, or pass --create-streams to create it)")]
    Missing(String),
    #[error("`{key}` is a Redis {found}, not a stream")]
    NotAStream { key: String, found: String },
    #[error(
        "on a Redis Cluster one reader's streams must share a hash slot (it reads them in one call), \
         but they are in slots {0}: give every stream of a network the same hash tag, e.g. \
         `{{intuition}}:intuition_deposited` (README → Scaling out)"
    )]
    SplitAcrossSlots(String),
    #[error(transparent)]
    Redis(#[from] RedisError),
}

impl Permanence for StreamError {
    fn fatal(&self, what: &str) -> Option<Fatal> {
        match self {
            StreamError::Missing(_) | StreamError::NotAStream { .. } | StreamError::SplitAcrossSlots(_) => {
                Some(Fatal::Config(self.to_string()))
            }
            StreamError::Redis(e) => e.fatal(what),
        }
    }
}

/// Errors no retry can fix: an invalid URL, authentication or permission refused, a TLS
/// certificate that does not verify.
impl Permanence for RedisError {
    fn fatal(&self, what: &str) -> Option<Fatal> {
        let refused = matches!(self.kind(), ErrorKind::AuthenticationFailed)
            || matches!(self.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
            || caused_by::<rustls::Error>(self);
        match self.kind() {
            ErrorKind::InvalidClientConfig => Some(Fatal::Config(format!("{what}: {self}"))),
            _ if refused => Some(Fatal::Refused(format!("{what}: {self}"))),
            _ => None,
        }
    }
}
