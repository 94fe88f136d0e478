//! A fresh database and fresh stream names for one measurement, dropped afterwards, so
//! that every figure starts from the same state and nothing clobbers a developer's data.

use anyhow::{Context, Result};
use redis::aio::MultiplexedConnection;
use rps::EngineConfig;

use crate::redis_out::stream_keys;

pub struct Scratch {
    pub name: String,
    pub database_url: String,
    pub redis_url: String,
    pub prefix: String,
    pub redis: MultiplexedConnection,
    pub apply_parts: usize,
}

impl Scratch {
    /// `base_url` is a PostgreSQL URL without a database name.
    pub async fn new(base_url: &str, redis_url: &str, run_id: &str, tag: &str, apply_parts: usize) -> Result<Scratch> {
        let name = format!("rps_bench_{run_id}_{tag}");
        let database_url = format!("{}/{name}", base_url.trim_end_matches('/'));
        rps::pg::schema::ensure_database(&database_url).await?;
        rps::pg::schema::migrate(&database_url).await?;
        let redis = crate::redis_out::connect(redis_url).await?;
        let redis_url = redis_url.to_owned();
        Ok(Scratch { prefix: format!("{name}:"), name, database_url, redis_url, redis, apply_parts })
    }

    pub fn streams(&self) -> Vec<String> {
        stream_keys(&self.prefix)
    }

    pub fn term_updates(&self) -> String {
        format!("{}term_updates", self.prefix)
    }

    /// Engine settings for this scratch space: drain and exit, quick idle detection.
    pub fn engine_config(&self, batch_size: usize, backfill: bool) -> EngineConfig {
        let mut c = EngineConfig::local(&self.database_url, &self.streams()).with_parts(self.apply_parts);
        c.redis_url = self.redis_url.clone();
        c.batch_size = batch_size;
        c.backfill = backfill;
        c.block_ms = 50;
        c.term_updates_stream = self.term_updates();
        c.consumer = Some(format!("{}-engine", self.name));
        c
    }

    pub async fn client(&self) -> Result<tokio_postgres::Client> {
        Ok(rps::pg::connect_one(&self.database_url).await?)
    }

    /// Drop the database and every key under the prefix.
    pub async fn drop(mut self, base_url: &str) -> Result<()> {
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}*", self.prefix)).query_async(&mut self.redis).await.context("KEYS")?;
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut self.redis).await.context("DEL")?;
        }
        let admin = crate::admin::connect(base_url).await?;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)).await?;
        Ok(())
    }
}
