//! Fault injection for the reliability tests: the real binaries as child processes (killed
//! with SIGKILL or stopped with SIGTERM), private PostgreSQL and Redis servers that can be
//! crashed and restarted ([`loadgen::servers`]), and PostgreSQL outages confined to one test
//! database (the shared server is never stopped).

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use loadgen::redis_out::{write_messages, WriteOptions};
pub use loadgen::servers::{free_port, PrivatePostgres, PrivateRedis};
use loadgen::workload::{generate, Workload, WorkloadConfig};

use crate::env::PG;
use crate::TestEnv;

/// A binary of the workspace, built next to the test binaries (`scripts/test.sh` and
/// `cargo test --workspace` build them; with `-p integration-tests`, run
/// `cargo build --bins` first).
pub fn binary(name: &str) -> PathBuf {
    let beside_tests = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.parent()?.join(name)));
    let in_workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug").join(name);
    [beside_tests, Some(in_workspace)]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} binary not found: run `cargo build --bins` first"))
}

/// One engine or worker process.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

/// `redis-postgres-sync` for `env` under `consumer`; logs at warn level.
fn engine_command(env: &TestEnv, redis_url: &str, consumer: &str) -> Command {
    let mut cmd = Command::new(binary("redis-postgres-sync"));
    cmd.env("DATABASE_URL", &env.database_url)
        .env("REDIS_URL", redis_url)
        .env("STREAMS", env.streams.join(","))
        .env("CREATE_STREAMS", "true")
        .env("TERM_UPDATES_STREAM", env.term_updates_stream())
        .env("CONSUMER_NAME", consumer)
        .env("BLOCK_MS", "100")
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn");
    cmd
}

impl Proc {
    /// `redis-postgres-sync` for `env` under `consumer`, with extra environment `vars`.
    /// Logs go to stderr only at warn level, so a failing test shows why.
    pub fn engine(env: &TestEnv, redis_url: &str, consumer: &str, vars: &[(&str, &str)]) -> Proc {
        Proc::spawn(engine_command(env, redis_url, consumer), consumer, vars)
    }

    /// `analytics-worker` for `env` under `consumer`.
    pub fn worker(env: &TestEnv, redis_url: &str, consumer: &str, vars: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(binary("analytics-worker"));
        cmd.env("DATABASE_URL", &env.database_url)
            .env("REDIS_URL", redis_url)
            .env("TERM_UPDATES_STREAM", env.term_updates_stream())
            .env("ANALYTICS_CONSUMER", consumer)
            .env("ANALYTICS_BLOCK_MS", "100")
            .env("ANALYTICS_METRICS_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn");
        Proc::spawn(cmd, consumer, vars)
    }

    fn spawn(mut cmd: Command, name: &str, vars: &[(&str, &str)]) -> Proc {
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd.stdin(Stdio::null()).spawn().expect("spawn a binary");
        Proc { child, name: name.to_owned() }
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send SIGTERM (or another signal by name) without waiting.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{sig} {}", self.child.id());
    }

    /// Wait up to `limit` for the process to exit; `None` if it is still running.
    pub fn wait_for(&mut self, limit: Duration) -> Option<(ExitStatus, Duration)> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some((status, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Close every connection to the test database except the caller's; returns how many.
pub async fn terminate_backends(env: &TestEnv) -> i64 {
    let admin = rps::pg::connect_one(&format!("{PG}/postgres")).await.expect("connect");
    admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&env.name],
        )
        .await
        .expect("pg_terminate_backend")
        .get(0)
}

/// Refuse (or allow again) new connections to the test database; existing ones live on.
pub async fn allow_connections(env: &TestEnv, allow: bool) {
    let admin = rps::pg::connect_one(&format!("{PG}/postgres")).await.expect("connect");
    admin.batch_execute(&format!("ALTER DATABASE \"{}\" ALLOW_CONNECTIONS {allow}", env.name)).await.expect("ALTER");
}

/// A realistic loadgen workload: `events` good events, shuffled delivery, re-sent
/// messages and malformed ones.
pub fn noisy_workload(events: usize, seed: u64) -> Workload {
    generate(&WorkloadConfig {
        events,
        seed,
        atoms: events / 40,
        triples: events / 25,
        accounts: 200,
        events_per_message: 10,
        shuffle_window: 50,
        duplicate_rate: 0.1,
        malformed_rate: 0.01,
        ..WorkloadConfig::default()
    })
}

/// XADD a loadgen workload to `env`'s streams on `redis_url`.
pub async fn feed_workload(env: &TestEnv, redis_url: &str, workload: &Workload) {
    let mut con = rps::stream::connect(redis_url).await.expect("redis");
    let options = WriteOptions { stream_prefix: format!("{}:", env.name), ..WriteOptions::default() };
    write_messages(&mut con, &workload.messages, &options).await.expect("XADD the workload");
}

/// Good events stored in the six event tables.
pub async fn logged_events(env: &TestEnv) -> i64 {
    env.count(
        "SELECT (SELECT count(*) FROM atom_created_events) + (SELECT count(*) FROM triple_created_events) \
         + (SELECT count(*) FROM deposited_events) + (SELECT count(*) FROM redeemed_events) \
         + (SELECT count(*) FROM share_price_changed_events) + (SELECT count(*) FROM generic_events)",
    )
    .await
}

/// Entries not yet acked by `group` over `streams` on `redis_url`.
pub async fn pending_on(redis_url: &str, streams: &[String], group: &str) -> usize {
    let mut con = rps::stream::connect(redis_url).await.expect("redis");
    let mut total = 0;
    for s in streams {
        let reply: redis::RedisResult<redis::streams::StreamPendingReply> =
            redis::cmd("XPENDING").arg(s).arg(group).query_async(&mut con).await;
        total += reply.map(|r| r.count()).unwrap_or(0);
    }
    total
}

/// GET `path` from `127.0.0.1:port` over plain HTTP/1.0 and return the body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or(out))
}

/// Whether `group` has been handed every entry of every stream and acked them all.
pub async fn drained(redis_url: &str, streams: &[String], group: &str) -> bool {
    let Ok(mut con) = rps::stream::connect(redis_url).await else {
        return false;
    };
    for stream in streams {
        let info: redis::RedisResult<redis::streams::StreamInfoStreamReply> =
            redis::cmd("XINFO").arg("STREAM").arg(stream).query_async(&mut con).await;
        let groups: redis::RedisResult<redis::streams::StreamInfoGroupsReply> =
            redis::cmd("XINFO").arg("GROUPS").arg(stream).query_async(&mut con).await;
        let (Ok(info), Ok(groups)) = (info, groups) else {
            return false;
        };
        let done = groups
            .groups
            .iter()
            .any(|g| g.name == group && g.pending == 0 && g.last_delivered_id == info.last_generated_id);
        if !done {
            return false;
        }
    }
    true
}

/// Wait until [`drained`], up to `limit`.
pub async fn wait_drained(redis_url: &str, streams: &[String], group: &str, limit: Duration) {
    let started = Instant::now();
    while !drained(redis_url, streams, group).await {
        assert!(started.elapsed() < limit, "{streams:?} not drained by {group} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Let an engine run into its crash point (`point`), asserting that it aborts there, or, with
/// none, kill it with SIGKILL after a random 100-600 ms.
pub async fn crash_or_kill(engine: &mut Proc, point: Option<&str>, rng: &mut impl rand::Rng) {
    match point {
        Some(p) => {
            let (status, _) = engine.wait_for(Duration::from_secs(30)).expect("the crash point is reached");
            assert!(!status.success(), "the engine must abort at {p}");
        }
        None => {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(100..600))).await;
            engine.kill9();
        }
    }
}
