//! Errors that end a run at once, because waiting cannot fix them, and the exit codes the
//! binaries give for them (README → Exit codes).

/// A run that cannot succeed by retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    /// A flag, URL or setting is wrong (exit code 2).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A dependency refuses us for good: authentication, permissions, TLS, a missing
    /// database (exit code 3).
    #[error("{0}")]
    Refused(String),
}

impl Fatal {
    pub fn exit_code(&self) -> u8 {
        match self {
            Fatal::Config(_) => EXIT_CONFIG,
            Fatal::Refused(_) => EXIT_REFUSED,
        }
    }
}

/// A check failed (verify, doctor) or the run ended on an unexpected error.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;
pub const EXIT_REFUSED: u8 = 3;

/// Whether an error will come back however often the operation is retried: `Some` with the
/// run's end when it will (`what` names the operation), `None` for transient errors.
pub trait Permanence {
    fn fatal(&self, what: &str) -> Option<Fatal>;
}

/// Whether `T` is among the causes of `error`, looking inside I/O errors too (TLS libraries
/// report handshake failures as an I/O error wrapping their own, and redis-rs keeps that
/// behind an `Arc`).
pub fn caused_by<T: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<T>() {
            return true;
        }
        let inner: Option<&(dyn std::error::Error + 'static)> = match e.downcast_ref::<Shared>() {
            Some(shared) => Some(shared.as_ref()),
            None => e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|i| i as _),
        };
        if inner.is_some_and(caused_by::<T>) {
            return true;
        }
        cause = e.source();
    }
    false
}
