//! One test's private corner of the local services.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use rps::ops::verify::{compare_all, TableDiff, STRONG_TABLES};
use rps::EngineConfig;

pub const PG: &str = "postgres://postgres@127.0.0.1:5432";
pub const REDIS: &str = "redis://127.0.0.1:6379";

/// Logical streams, in the order `TestEnv::streams` lists them.
pub const LOGICAL_STREAMS: [&str; 5] =
    ["atom_created", "triple_created", "deposited", "redeemed", "share_price_changed"];

pub struct TestEnv {
    pub name: String,
    /// The PostgreSQL server, as a URL without a database name.
    pub pg: String,
    pub database_url: String,
    pub streams: Vec<String>,
    pub redis: MultiplexedConnection,
}

impl TestEnv {
    /// A fresh database (created and migrated) on the local server and fresh stream names.
    pub async fn new(tag: &str) -> TestEnv {
        TestEnv::on(PG, tag).await
    }

    /// A fresh database on the server at `pg` (a URL without a database name, e.g. a
    /// private cluster's) and fresh stream names on the local Redis.
    pub async fn on(pg: &str, tag: &str) -> TestEnv {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("rps_t_{tag}_{}_{nanos}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let database_url = format!("{pg}/{name}");
        rps::pg::schema::ensure_database(&database_url).await.expect("create test database");
        rps::pg::schema::migrate(&database_url).await.expect("migrate test database");
        let streams = LOGICAL_STREAMS.iter().map(|s| format!("{name}:intuition_{s}")).collect();
        let redis = rps::stream::connect(REDIS).await.expect("redis");
        TestEnv { name, pg: pg.to_owned(), database_url, streams, redis }
    }

    /// Engine settings for this environment: drain and exit.
    pub fn config(&self) -> EngineConfig {
        let mut c = EngineConfig::local(&self.database_url, &self.streams);
        c.block_ms = 100;
        c.term_updates_stream = self.term_updates_stream();
        c
    }

    /// A process named `consumer` in the engine's group reads up to `count` new entries of
    /// each of `streams` (indexes into `self.streams`) and dies without acking them: they
    /// stay pending on its name. Returns how many it read.
    pub async fn read_and_abandon(&self, consumer: &str, streams: &[usize], count: usize) -> usize {
        let config = rps::stream::ReaderConfig {
            streams: streams.iter().map(|&i| self.streams[i].clone()).collect(),
            group: self.config().group,
            consumer: consumer.to_owned(),
            count,
            block: std::time::Duration::from_millis(1),
            claim_idle: std::time::Duration::from_secs(3600),
            create_streams: true,
            budget: rps::stream::ReadBudget::DEFAULT,
        };
        let mut reader = rps::stream::GroupReader::connect(REDIS, config).await.expect("connect a group reader");
        match reader.next().await.expect("XREADGROUP") {
            rps::stream::Read::Entries(entries) => entries.len(),
            rps::stream::Read::Idle => 0,
        }
    }

    pub fn term_updates_stream(&self) -> String {
        format!("{}:term_updates", self.name)
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        rps::pg::connect_one(&self.database_url).await.expect("connect")
    }

    /// XADD `payload` to stream number `stream` under the field name `field`.
    pub async fn xadd_field(&mut self, stream: usize, field: &str, payload: &[u8]) {
        let _: String = redis::cmd("XADD")
            .arg(&self.streams[stream])
            .arg("*")
            .arg(field)
            .arg(payload)
            .query_async(&mut self.redis)
            .await
            .expect("XADD");
    }

    pub async fn xadd(&mut self, stream: usize, payload: &[u8]) {
        self.xadd_field(stream, "payload", payload).await
    }

    /// XADD many (stream, payload) pairs in pipelined chunks.
    pub async fn xadd_all(&mut self, messages: &[(usize, String)]) {
        for chunk in messages.chunks(500) {
            let mut pipe = redis::pipe();
            for (stream, payload) in chunk {
                pipe.cmd("XADD").arg(&self.streams[*stream]).arg("*").arg("payload").arg(payload.as_bytes()).ignore();
            }
            let _: () = pipe.query_async(&mut self.redis).await.expect("XADD pipeline");
        }
    }

    /// XADD many (stream, entry id, payload) triples, with their ids, in pipelined chunks.
    pub async fn xadd_all_at(&mut self, messages: &[(usize, String, String)]) {
        for chunk in messages.chunks(500) {
            let mut pipe = redis::pipe();
            for (stream, id, payload) in chunk {
                pipe.cmd("XADD").arg(&self.streams[*stream]).arg(id).arg("payload").arg(payload.as_bytes()).ignore();
            }
            let _: () = pipe.query_async(&mut self.redis).await.expect("XADD pipeline");
        }
    }

    /// The engine binary configured for this environment (streams, database, term_updates).
    pub fn engine_command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(crate::faults::binary("redis-postgres-sync"));
        cmd.env("DATABASE_URL", &self.database_url)
            .env("REDIS_URL", REDIS)
            .env("STREAMS", self.streams.join(","))
            .env("CREATE_STREAMS", "true")
            .env("TERM_UPDATES_STREAM", self.term_updates_stream())
            .env("CONSUMER_GROUP", "redis-postgres-sync")
            .env("ANALYTICS_GROUP", "analytics-worker")
            .env("RUST_LOG", "warn")
            .kill_on_drop(true);
        cmd
    }

    /// Run a subcommand of the engine binary: (exit ok, stdout + stderr).
    pub async fn engine_subcommand(&self, args: &[&str]) -> (bool, String) {
        let out = self.engine_command().args(args).output().await.expect("run redis-postgres-sync");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// Run one engine to idle with `config`.
    pub async fn run(&self, config: EngineConfig) -> rps::RunSummary {
        rps::run(config, std::future::pending()).await.expect("engine run")
    }

    /// Run `n` engines at once on the same consumer group.
    pub async fn run_concurrently(&self, config: EngineConfig, n: usize) -> Vec<rps::RunSummary> {
        let runs = (0..n).map(|i| {
            let mut c = config.clone();
            c.consumer = Some(format!("{}-consumer-{i}", self.name));
            tokio::spawn(async move { rps::run(c, std::future::pending()).await.expect("engine run") })
        });
        let mut out = Vec::new();
        for r in runs.collect::<Vec<_>>() {
            out.push(r.await.expect("engine task"));
        }
        out
    }

    pub async fn strong_table_diffs(&self) -> Vec<TableDiff> {
        compare_all(&self.client().await, &STRONG_TABLES).await.expect("compare")
    }

    /// Every level 1-2 table equals its reference view row for row.
    pub async fn assert_matches_reference(&self) {
        let diffs = self.strong_table_diffs().await;
        let bad: Vec<String> = diffs.iter().filter(|d| !d.matches()).map(|d| d.to_string()).collect();
        assert!(bad.is_empty(), "tables differ from the snapshot views:\n{}", bad.join("\n"));
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.client().await.query_one(sql, &[]).await.expect(sql).get(0)
    }

    /// Entries of `<stream>:dlq` as (error, payload, origin stream, origin id).
    pub async fn dead_letters(&mut self, stream: usize) -> Vec<(String, String, String, String)> {
        let key = rps::stream::dead_letter_stream(&self.streams[stream]);
        let reply: redis::streams::StreamRangeReply =
            redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query_async(&mut self.redis).await.expect("XRANGE");
        reply
            .ids
            .into_iter()
            .map(|e| {
                let field = |k: &str| e.get::<String>(k).unwrap_or_default();
                (field("error"), field("payload"), field("stream"), field("id"))
            })
            .collect()
    }

    /// Drop the database and delete the streams.
    pub async fn cleanup(self) {
        // Every key this test made is under its name; a fresh connection, because a test may
        // leave its own one busy or broken.
        let mut redis =
            redis::Client::open(REDIS).expect("redis url").get_multiplexed_async_connection().await.expect("redis");
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}:*", self.name)).query_async(&mut redis).await.expect("KEYS");
        if !keys.is_empty() {
            let _: i64 = redis::cmd("UNLINK").arg(&keys).query_async(&mut redis).await.expect("UNLINK");
        }
        let admin = loadgen::admin::connect(&self.pg).await.expect("connect");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name))
            .await
            .expect("drop database");
    }
}
