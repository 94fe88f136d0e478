//! PostgreSQL: the connection pool and single connections ([`pool`]), the schema and its
//! migrations ([`schema`]), what an error means for retrying ([`error`]), every statement
//! the crate sends ([`sql`]), TLS as libpq's `sslmode` describes it ([`tls`]) and WAL flush
//! primitives ([`wal`]). Depends only on
//! [`crate::runtime`].

pub mod error;
pub mod pool;
pub mod schema;
pub mod sql;
pub mod tls;
pub mod wal;

pub use error::{Failure, PgError};

/// The database every binary uses unless told otherwise.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/intuition";
pub use pool::{connect_one, connect_pool, PgPool};
