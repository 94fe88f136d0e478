//! The database side of the worker: `refresh_analytics` (migrations/repeatable/analytics.sql)
//! over one connection, one READ COMMITTED transaction per chunk of term ids.

use tokio_postgres::{Client, IsolationLevel};

use crate::pg::error::error_text;
use crate::pg::pool::ConnectError;
use crate::pg::{connect_one, sql};

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("refresh_analytics: {}", error_text(.0))]
    Statement(#[from] tokio_postgres::Error),
}

/// Distinct term ids per refresh transaction. An id names at most one triple (its own, or
/// the one it is the counter term of), which locks the triple and its two pairs; advisory
/// locks live in PostgreSQL's shared lock table (about
/// max_locks_per_transaction × max_connections entries, 6400 by default, shared by every
/// session): 500 ids keep one worker under 1500 locks, so several workers and the engines
/// fit together. Chunks of one batch commit one after the other before the batch is acked.
pub const IDS_PER_TRANSACTION: usize = 500;

pub struct Refresher {
    database_url: String,
    client: Option<Client>,
}

impl Refresher {
    pub fn new(database_url: &str) -> Refresher {
        Refresher { database_url: database_url.to_owned(), client: None }
    }

    /// Refresh one chunk in one transaction; returns the number of triples refreshed.
    /// On error the transaction is rolled back (dropped) and a lost connection is
    /// replaced on the next call.
    pub async fn refresh(&mut self, term_ids: &[String]) -> Result<i32, RefreshError> {
        let result = self.refresh_once(term_ids).await;
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        result
    }

    async fn refresh_once(&mut self, term_ids: &[String]) -> Result<i32, RefreshError> {
        let client = self.client().await?;
        // refresh_analytics must read what committed after its locks were granted, which
        // only READ COMMITTED gives; requested explicitly whatever the server default.
        let tx = client.build_transaction().isolation_level(IsolationLevel::ReadCommitted).start().await?;
        let triples: i32 = tx.query_one(sql::REFRESH_ANALYTICS, &[&term_ids]).await?.get(0);
        tx.commit().await?;
        Ok(triples)
    }

    async fn client(&mut self) -> Result<&mut Client, RefreshError> {
        if self.client.is_none() {
            let client = connect_one(&self.database_url).await?;
            // An update is acked once its refresh commits: the commit must survive a crash.
            client.batch_execute(sql::DURABLE_COMMITS).await?;
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }
}
