//! What a PostgreSQL error means for the caller: retry the same work, or give up on the data.

use tokio_postgres::error::SqlState;

use crate::runtime::exit::caused_by;

/// A failed pool checkout: no connection within the pool's timeout, or opening one failed.
pub type PoolError = bb8::RunError<tokio_postgres::Error>;

/// An error from a pooled statement or transaction.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("{}", error_text(.0))]
    Statement(#[from] tokio_postgres::Error),
    #[error("no PostgreSQL connection available: {0}")]
    Pool(#[from] PoolError),
}

impl PgError {
    pub fn failure(&self) -> Failure {
        match self {
            PgError::Statement(e) => classify(e),
            PgError::Pool(bb8::RunError::User(e)) => classify(e),
            PgError::Pool(bb8::RunError::TimedOut) => Failure::Transient("connection"),
        }
    }
}

/// What a failure tells about retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Worth retrying as is: the connection or server went away, a lock conflict (deadlock,
    /// serialization failure), a resource limit. The label names the reason in metrics.
    Transient(&'static str),
    /// The data itself was refused: the same rows fail again however often they are retried.
    Data(&'static str),
}

/// Every [`Failure::reason`] there is: the `reason` label values of the retry metric.
pub const RETRY_REASONS: [&str; 9] = [
    "connection",
    "deadlock",
    "serialization",
    "lock_timeout",
    "canceled",
    "server_shutdown",
    "resources",
    "data",
    "other",
];

impl Failure {
    /// Label for the `reason` of the retry metric.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::Transient(r) | Failure::Data(r) => r,
        }
    }
}

// SQLSTATE classes (the first two characters), named as in PostgreSQL's errcodes appendix.
const CONNECTION_EXCEPTION: &str = "08";
const DATA_EXCEPTION: &str = "22";
const INTEGRITY_CONSTRAINT_VIOLATION: &str = "23";
const INSUFFICIENT_RESOURCES: &str = "53";
/// A value or a statement too large: splitting the batch isolates or resolves it.
const PROGRAM_LIMIT_EXCEEDED: &str = "54";
/// admin_shutdown, crash_shutdown, cannot_connect_now, database_dropped, …
const OPERATOR_INTERVENTION: &str = "57";

/// Classify by SQLSTATE; an error without one means the connection broke or closed.
pub fn classify(e: &tokio_postgres::Error) -> Failure {
    e.code().map_or(Failure::Transient("connection"), classify_code)
}

pub fn classify_code(code: &SqlState) -> Failure {
    if *code == SqlState::T_R_DEADLOCK_DETECTED {
        return Failure::Transient("deadlock");
    }
    if *code == SqlState::T_R_SERIALIZATION_FAILURE {
        return Failure::Transient("serialization");
    }
    if *code == SqlState::LOCK_NOT_AVAILABLE {
        return Failure::Transient("lock_timeout");
    }
    if *code == SqlState::QUERY_CANCELED {
        return Failure::Transient("canceled");
    }
    match code.code().get(..2).unwrap_or_default() {
        CONNECTION_EXCEPTION => Failure::Transient("connection"),
        OPERATOR_INTERVENTION => Failure::Transient("server_shutdown"),
        INSUFFICIENT_RESOURCES => Failure::Transient("resources"),
        DATA_EXCEPTION | INTEGRITY_CONSTRAINT_VIOLATION | PROGRAM_LIMIT_EXCEEDED => Failure::Data("data"),
        _ => Failure::Transient("other"),
    }
}

/// Errors no retry can fix: a wrong password, an unknown role or a `pg_hba.conf` rejection, a
/// missing database or privilege, or TLS that cannot be agreed on (the server has none, or
/// its certificate does not verify). A TLS handshake cut short by the network is not one.
pub fn is_refusal(e: &tokio_postgres::Error) -> bool {
    const REFUSED: [SqlState; 4] = [
        SqlState::INVALID_PASSWORD,
        SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        SqlState::INVALID_CATALOG_NAME,
        SqlState::INSUFFICIENT_PRIVILEGE,
    ];
    e.code().is_some_and(|c| REFUSED.contains(c))
        || caused_by::<rustls::Error>(e)
        || e.to_string().ends_with("server does not support TLS")
}

/// Whether the server refuses SQL the engine itself carries (its schema): a syntax error, a
/// feature or object it lacks (class 42, 0A000). Only a server the schema was not written
/// for does that, and it does it again on every retry.
pub fn is_incompatible(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(incompatible_code)
}

fn incompatible_code(code: &SqlState) -> bool {
    code.code().starts_with("42") || *code == SqlState::FEATURE_NOT_SUPPORTED
}

/// The server's message and SQLSTATE when there are some (the plain `Display` of a server
/// error is only "db error"), else what broke.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => std::error::Error::source(e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified_for_retry() {
        let f = |code: &str| classify_code(&SqlState::from_code(code));
        assert_eq!(f("40P01"), Failure::Transient("deadlock"));
        assert_eq!(f("40001"), Failure::Transient("serialization"));
        assert_eq!(f("55P03"), Failure::Transient("lock_timeout"));
        assert_eq!(f("57014"), Failure::Transient("canceled"));
        assert_eq!(f("57P01"), Failure::Transient("server_shutdown"));
        assert_eq!(f("08006"), Failure::Transient("connection"));
        assert_eq!(f("53300"), Failure::Transient("resources"));
        assert_eq!(f("22P02"), Failure::Data("data"));
        assert_eq!(f("23505"), Failure::Data("data"));
        assert_eq!(f("54000"), Failure::Data("data"));
        assert_eq!(f("42P01"), Failure::Transient("other"));
        assert_eq!(PgError::Pool(bb8::RunError::TimedOut).failure(), Failure::Transient("connection"));
    }

    #[test]
    fn sql_the_server_cannot_run_is_told_from_passing_trouble() {
        for code in ["42601", "42883", "42P01", "0A000"] {
            assert!(incompatible_code(&SqlState::from_code(code)), "{code}");
        }
        for code in ["40P01", "55P03", "57P01", "08006", "53300", "22P02", "XX000"] {
            assert!(!incompatible_code(&SqlState::from_code(code)), "{code}");
        }
    }

    #[test]
    fn every_reason_is_listed_for_the_metric() {
        let codes = ["40P01", "40001", "55P03", "57014", "57P01", "08006", "53300", "22P02", "42P01"];
        let seen: std::collections::BTreeSet<&str> =
            codes.iter().map(|c| classify_code(&SqlState::from_code(c)).reason()).collect();
        let listed: std::collections::BTreeSet<&str> = RETRY_REASONS.into_iter().collect();
        assert_eq!(seen, listed);
    }
}
