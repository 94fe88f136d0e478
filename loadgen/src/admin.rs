//! A connection to a server's `postgres` database, from a URL without a database name: for
//! what concerns whole databases (create, copy, drop, refuse connections) and server facts.

/// `base_url` is a PostgreSQL URL without a database name (a trailing `/` is fine).
pub async fn connect(base_url: &str) -> anyhow::Result<tokio_postgres::Client> {
    Ok(rps::pg::connect_one(&format!("{}/postgres", base_url.trim_end_matches('/'))).await?)
}
