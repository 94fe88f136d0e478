//! What an operator meets first: the demo stays in its own namespace on servers others use,
//! subcommands take only their own flags and say what they do, exit codes mean something,
//! logs go to stderr (as JSON on request) with one progress line per interval, and the
//! `health` subcommand probes a running binary.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use integration_tests::analytics::{run_workers, shared_pair_messages, worker_config};
use integration_tests::env::REDIS;
use integration_tests::faults::binary;
use integration_tests::TestEnv;
use loadgen::servers::{PrivatePostgres, PrivateRedis};
use redis::aio::MultiplexedConnection;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Run a binary of the workspace with `args` and `env`, nothing inherited that it reads.
fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary(bin));
    for var in ["DATABASE_URL", "REDIS_URL", "STREAMS", "TERM_UPDATES_STREAM", "METRICS_ADDR", "RUST_LOG", "LOG_FORMAT"]
    {
        cmd.env_remove(var);
    }
    cmd.args(args).envs(env.iter().copied()).stdin(Stdio::null()).output().expect("run the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every key on a Redis with, for streams, what a consumer of it would notice: length,
/// last id, and each group's last delivered id and pending count.
async fn redis_state(con: &mut MultiplexedConnection) -> BTreeMap<String, String> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(con).await.unwrap();
    let mut state = BTreeMap::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(con).await.unwrap();
        let mut seen = kind.clone();
        if kind == "stream" {
            let len: u64 = redis::cmd("XLEN").arg(&key).query_async(con).await.unwrap();
            let groups: redis::Value = redis::cmd("XINFO").arg("GROUPS").arg(&key).query_async(con).await.unwrap();
            seen = format!("stream len {len} groups {groups:?}");
        }
        state.insert(key, seen);
    }
    state
}

async fn databases(client: &tokio_postgres::Client) -> BTreeSet<String> {
    let rows = client.query("SELECT datname FROM pg_database", &[]).await.unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// On a Redis where another consumer already reads `intuition_*` and `term_updates` (the
/// production names), the demo touches none of it: it writes only `<namespace>:*` keys and
/// creates only the `<namespace>` database, and it ends with what to do next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_stays_in_its_namespace_on_shared_servers() {
    let redis = PrivateRedis::start("demo").await.unwrap();
    let pg = PrivatePostgres::start("demo", &[]).await.unwrap();
    let mut con = rps::stream::connect(&redis.url()).await.unwrap();
    // Someone else's pipeline: the default stream names, groups with pending entries.
    for stream in ["intuition_deposited", "term_updates"] {
        for i in 0..3 {
            let _: String =
                redis::cmd("XADD").arg(stream).arg("*").arg("payload").arg(i).query_async(&mut con).await.unwrap();
        }
        let _: () =
            redis::cmd("XGROUP").arg("CREATE").arg(stream).arg("theirs").arg("0").query_async(&mut con).await.unwrap();
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("theirs")
            .arg("them")
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query_async(&mut con)
            .await
            .unwrap();
    }
    let admin = rps::pg::connect_one(&pg.url("postgres")).await.unwrap();
    admin.batch_execute("CREATE DATABASE intuition").await.unwrap();
    let (redis_before, databases_before) = (redis_state(&mut con).await, databases(&admin).await);

    let namespace = format!("rps_demo_test_{}", std::process::id());
    let bin_dir = binary("redis-postgres-sync").parent().unwrap().to_owned();
    let out = Command::new(repo().join("scripts/demo.sh"))
        .env("DEMO_NAMESPACE", &namespace)
        .env("DEMO_EVENTS", "2000")
        .env("DEMO_PG_URL", pg.base_url())
        .env("DEMO_REDIS_URL", redis.url())
        .env("DEMO_BIN_DIR", &bin_dir)
        // What a production shell may have set: the demo must not follow it.
        .env("DATABASE_URL", pg.url("intuition"))
        .env("STREAMS", "intuition_deposited")
        .env("TERM_UPDATES_STREAM", "term_updates")
        .env("REDIS_URL", redis.url())
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/demo.sh");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("== demo namespace: database {}", pg.url(&namespace))), "{stdout}");
    for next in ["== what you just saw", "== what next", "doctor", "/metrics", "stream_name:", "connection_uri:"] {
        assert!(stdout.contains(next), "the closing words lack {next:?}:\n{stdout}");
    }
    assert_eq!(stdout.matches(" ok\n").count(), 9, "nine tables verified:\n{stdout}");
    assert!(stderr.lines().filter(|l| l.contains("migration")).count() <= 1, "quiet migrations:\n{stderr}");

    let redis_after = redis_state(&mut con).await;
    for (key, before) in &redis_before {
        assert_eq!(redis_after.get(key), Some(before), "the demo changed {key}");
    }
    let added: Vec<&String> = redis_after.keys().filter(|k| !redis_before.contains_key(*k)).collect();
    assert!(added.len() >= 6, "the demo's streams: {added:?}");
    assert!(added.iter().all(|k| k.starts_with(&format!("{namespace}:"))), "keys outside the namespace: {added:?}");
    let new_databases: BTreeSet<String> = databases(&admin).await.difference(&databases_before).cloned().collect();
    assert_eq!(new_databases, BTreeSet::from([namespace.clone()]));
    let untouched = rps::pg::connect_one(&pg.url("intuition")).await.unwrap();
    let tables: i64 =
        untouched.query_one("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", &[]).await.unwrap().get(0);
    assert_eq!(tables, 0, "the demo wrote into database intuition");
}

/// Each subcommand lists and accepts only the flags it uses, and a flag of the engine given
/// with a subcommand is refused rather than ignored.
#[test]
fn subcommands_take_only_their_own_flags() {
    let help = |args: &[&str]| {
        let out = run("redis-postgres-sync", args, &[]);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    for sub in ["verify", "rollback"] {
        let h = help(&[sub, "--help"]);
        assert!(h.contains("--database-url"), "{sub}:\n{h}");
        for foreign in ["--redis-url", "--streams", "--group", "--batch-size", "--metrics-addr", "--backfill"] {
            assert!(!h.contains(foreign), "{sub} --help lists {foreign}:\n{h}");
        }
        assert!(!h.contains("created if it does not exist"), "{sub} never creates the database:\n{h}");
    }
    let doctor = help(&["doctor", "--help"]);
    for own in ["--database-url", "--redis-url", "--streams", "--group", "--term-updates-stream", "--analytics-group"] {
        assert!(doctor.contains(own), "doctor --help lacks {own}:\n{doctor}");
    }
    assert!(!doctor.contains("--batch-size"), "{doctor}");
    let health = help(&["health", "--help"]);
    assert!(health.contains("--url") && !health.contains("--database-url"), "{health}");
    let worker = run("analytics-worker", &["health", "--help"], &[]);
    assert!(worker.status.success() && text(&worker.stdout).contains("--url"));

    let refused = run("redis-postgres-sync", &["--database-url", "postgres://x@127.0.0.1:1/x", "verify"], &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("cannot be used with"), "{}", text(&refused.stderr));
    let feed = text(&run("loadgen", &["feed", "--help"], &[]).stdout);
    assert!(!feed.contains("--out file is given"), "feed has no --out:\n{feed}");
}

/// `health` exits 0 when /health answers 200 and 1 when nothing answers.
#[test]
fn health_fails_when_nothing_answers() {
    let port = loadgen::servers::free_port();
    for bin in ["redis-postgres-sync", "analytics-worker"] {
        let out = run(bin, &["health", "--url", &format!("http://127.0.0.1:{port}/health")], &[]);
        assert_eq!(out.status.code(), Some(1), "{bin}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("refused"), "{}", text(&out.stderr));
    }
}

/// `verify` exits 1 whenever it prints a mismatch: with --analytics, the level 3 tables
/// before the worker has run; 0 once it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_exits_1_on_any_mismatch_it_prints() {
    let mut env = TestEnv::new("verify_exit").await;
    let (pairs, _) = shared_pair_messages();
    env.xadd_all(&pairs).await;
    env.run(env.config()).await;
    let db = [("DATABASE_URL", env.database_url.as_str())];

    let strong = run("redis-postgres-sync", &["verify"], &db);
    assert!(strong.status.success(), "{}{}", text(&strong.stdout), text(&strong.stderr));
    let analytics = run("redis-postgres-sync", &["verify", "--analytics"], &db);
    assert!(text(&analytics.stdout).contains("MISMATCH"), "{}", text(&analytics.stdout));
    assert_eq!(analytics.status.code(), Some(1), "a printed MISMATCH must fail");

    run_workers(&worker_config(&env), 1, None).await;
    let caught_up = run("redis-postgres-sync", &["verify", "--analytics"], &db);
    assert!(caught_up.status.success(), "{}", text(&caught_up.stdout));
    assert!(!text(&caught_up.stdout).contains("MISMATCH"));
    env.cleanup().await;
}

/// With --log-format json every log line on stderr is one JSON object, stdout stays empty
/// (no terminal, so no bar), and the backfill progress is one line per interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_on_stderr_with_one_progress_line_per_interval() {
    let env = TestEnv::new("json_logs").await;
    let streams = env.streams.join(",");
    let updates = env.term_updates_stream();
    let vars = [
        ("DATABASE_URL", env.database_url.as_str()),
        ("REDIS_URL", REDIS),
        ("STREAMS", streams.as_str()),
        ("TERM_UPDATES_STREAM", updates.as_str()),
        ("METRICS_ADDR", "127.0.0.1:0"),
    ];
    let child = Command::new(binary("redis-postgres-sync"))
        .args(["--backfill", "--create-streams", "--log-format", "json", "--progress", "log"])
        .args(["--progress-interval-secs", "1", "--block-ms", "100"])
        .envs(vars)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "", "stdout is for the bar on a terminal only");
    let mut progress_times = Vec::new();
    for line in text(&out.stderr).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["fields"]["message"] == "backfill progress" {
            assert!(v["fields"]["percent"].is_string(), "totals are known from the start: {line}");
            progress_times.push(v["timestamp"].as_str().unwrap().to_owned());
        }
    }
    // A failure too is a JSON record on stderr, with its exit code.
    let missing = format!("{}_missing", env.database_url);
    let failed = run("redis-postgres-sync", &["verify", "--log-format", "json"], &[("DATABASE_URL", &missing)]);
    assert_eq!(failed.status.code(), Some(3));
    let record: serde_json::Value = serde_json::from_str(text(&failed.stderr).trim()).expect("one JSON record");
    assert_eq!((record["level"].as_str(), record["fields"]["exit_code"].as_u64()), (Some("ERROR"), Some(3)));
    // Four intervals, give or take one at either end; never two lines for one interval.
    assert!((3..=5).contains(&progress_times.len()), "{progress_times:?}");
    let distinct: BTreeSet<&str> = progress_times.iter().map(|t| &t[..19]).collect();
    assert_eq!(distinct.len(), progress_times.len(), "two progress lines in one second: {progress_times:?}");
    env.cleanup().await;
}
