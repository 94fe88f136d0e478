//! Operations: `doctor`, the readers rollback, the metrics and health the running binaries
//! export (every name the dashboard and alerts use), and the deploy files' consistency.
//!
//! The binaries are run as operators run them (`cargo build --workspace --bins` first;
//! scripts/test.sh does).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use integration_tests::analytics::{counter_vault_messages, run_workers, shared_pair_messages, worker_config};
use integration_tests::env::{LOGICAL_STREAMS, REDIS};
use integration_tests::faults::binary;
use integration_tests::TestEnv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn feed_samples(env: &mut TestEnv) {
    let samples = include_str!("../samples/mixed-encodings.jsonl");
    for line in samples.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let stream = LOGICAL_STREAMS.iter().position(|s| v["stream"].as_str().unwrap().ends_with(s)).expect("stream");
        env.xadd(stream, v["payload"].to_string().as_bytes()).await;
    }
}

/// Events in the samples (a message carries one event or an array of them).
fn sample_events() -> usize {
    include_str!("../samples/mixed-encodings.jsonl")
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["payload"]["event_data"].as_array().map_or(1, Vec::len)
        })
        .sum()
}

async fn doctor(env: &TestEnv) -> (bool, String) {
    env.engine_subcommand(&["doctor"]).await
}

fn line_with<'a>(output: &'a str, needle: &str) -> &'a str {
    output.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle:?} in:\n{output}"))
}

/// Sync the samples (and one message that is not JSON), then let one worker drain
/// term_updates, so both consumer groups exist and every table has rows.
async fn synced_env(tag: &str) -> TestEnv {
    let mut env = TestEnv::new(tag).await;
    feed_samples(&mut env).await;
    let (pairs, _) = shared_pair_messages();
    env.xadd_all(&pairs).await;
    env.xadd(1, b"not json at all").await;
    env.run(env.config()).await;
    run_workers(&worker_config(&env), 1, None).await;
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_a_healthy_sync_and_fails_on_trigger_or_migration_trouble() {
    let env = synced_env("doctor").await;

    let (ok, out) = doctor(&env).await;
    assert!(ok, "doctor fails on a healthy database:\n{out}");
    assert!(line_with(&out, "none pending").contains("ok"), "{out}");
    for (trigger, table) in rps::ops::doctor::TRIGGERS {
        let line = line_with(&out, trigger);
        assert!(line.contains(&format!("on {table}: enabled")) && line.trim_start().starts_with("ok"), "{line}");
    }
    assert!(out.contains("readers.* read the maintained tables"), "{out}");
    for table in rps::ops::doctor::reported_tables() {
        assert!(out.lines().any(|l| l.trim_start().starts_with(table)), "no size line for {table}:\n{out}");
    }
    assert!(out.contains("no blocked sessions"), "{out}");
    // Both consumer groups, drained.
    for stream in &env.streams {
        let line = line_with(&out, &format!("{stream} "));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[0], "ok", "{line}");
        assert_eq!(cols[2], "redis-postgres-sync", "{line}");
        assert_eq!((cols[4], cols[5]), ("0", "0"), "lag and pending of a drained stream: {line}");
    }
    let updates = line_with(&out, &format!("{} ", env.term_updates_stream()));
    assert!(updates.contains("analytics-worker") && !updates.contains("missing"), "{updates}");
    // The bad message is a dead letter: a warning, not a failure.
    let dlq = line_with(&out, &rps::stream::dead_letter_stream(&env.streams[1]));
    assert!(dlq.contains("WARN") && dlq.contains("1 rejected"), "{dlq}");
    assert!(line_with(&out, &rps::stream::dead_letter_stream(&env.streams[0])).contains("empty"), "{out}");
    assert!(out.contains("term_update_outbox: empty"), "{out}");
    assert!(out.contains("none applied"), "no reorg yet: {out}");
    assert!(out.trim_end().ends_with("doctor: 0 problems, 1 warning"), "{out}");

    // A session blocked behind another's lock shows up, with who blocks it.
    let holder = env.client().await;
    holder.batch_execute("BEGIN; LOCK TABLE atom IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let holder_pid: i32 = holder.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let waiter = env.client().await;
    let waiting = tokio::spawn(async move { waiter.query_one("SELECT count(*) FROM atom", &[]).await.map(|_| ()) });
    let watcher = env.client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let blocked: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                   AND cardinality(pg_blocking_pids(pid)) > 0",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if blocked > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the waiting session never blocked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, out) = doctor(&env).await;
    assert!(ok, "a blocked session is a warning, not a failure:\n{out}");
    let blocked = line_with(&out, "blocked by");
    assert!(blocked.contains("WARN") && blocked.contains(&holder_pid.to_string()), "{blocked}");
    // Doctor itself does not queue behind the lock.
    assert!(line_with(&out, "locked by another session").trim_start().starts_with("WARN  atom "), "{out}");
    holder.batch_execute("ROLLBACK").await.unwrap();
    waiting.await.unwrap().unwrap();

    // Tables not updating: a disabled trigger fails the check, with the fix.
    let client = env.client().await;
    client.batch_execute("ALTER TABLE deposited_events DISABLE TRIGGER trigger_deposited").await.unwrap();
    let (ok, out) = doctor(&env).await;
    assert!(!ok, "doctor must fail when a trigger is disabled:\n{out}");
    let line = line_with(&out, "trigger_deposited");
    assert!(line.contains("FAIL") && line.contains("DISABLED"), "{line}");
    assert!(line.contains("ALTER TABLE deposited_events ENABLE TRIGGER trigger_deposited"), "{line}");
    assert!(out.contains("doctor: 1 problem,"), "{out}");
    client.batch_execute("ALTER TABLE deposited_events ENABLE TRIGGER trigger_deposited").await.unwrap();
    assert!(doctor(&env).await.0, "re-enabled: healthy again");

    client.batch_execute("DROP TRIGGER trigger_redeemed ON redeemed_events").await.unwrap();
    let (ok, out) = doctor(&env).await;
    assert!(!ok);
    let missing = line_with(&out, "trigger_redeemed");
    assert!(missing.contains("MISSING") && missing.contains("restart the engine"), "{out}");
    // As doctor says: the schema work of an engine start re-creates it.
    rps::pg::schema::migrate(&env.database_url).await.expect("migrate");
    assert!(doctor(&env).await.0, "the trigger is back");

    // A database behind the binary's migrations.
    client
        .batch_execute(
            "DELETE FROM refinery_schema_history WHERE version = (SELECT max(version) FROM refinery_schema_history)",
        )
        .await
        .unwrap();
    let (ok, out) = doctor(&env).await;
    assert!(!ok);
    let line = line_with(&out, "pending:");
    assert!(line.contains("FAIL") && line.contains("1 pending"), "{line}");
    env.cleanup().await;
}

/// Rows of `relation` as one digest, order independent.
async fn digest(client: &tokio_postgres::Client, relation: &str) -> (i64, String) {
    let row = client
        .query_one(
            &format!("SELECT count(*), md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) FROM {relation} r"),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{relation}: {e}"));
    (row.get(0), row.get(1))
}

async fn assert_readers_equal(client: &tokio_postgres::Client, schema: &str) {
    for table in rps::ops::verify::DERIVED_TABLES {
        let readers = digest(client, &format!("readers.{table}")).await;
        let other = digest(client, &format!("{schema}.{table}")).await;
        assert_eq!(readers, other, "readers.{table} differs from {schema}.{table}");
    }
}

const EVENT_LOG: &str =
    "SELECT (SELECT count(*) FROM atom_created_events) + (SELECT count(*) FROM triple_created_events) \
     + (SELECT count(*) FROM deposited_events) + (SELECT count(*) FROM redeemed_events) \
     + (SELECT count(*) FROM share_price_changed_events) + (SELECT count(*) FROM generic_events)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_switches_readers_to_the_reference_views_and_back() {
    let mut env = synced_env("rollback").await;
    let client = env.client().await;
    let readers_mode = || async { client.query_one("SELECT readers_mode()", &[]).await.unwrap().get::<_, String>(0) };
    assert_eq!(readers_mode().await, "maintained");
    assert!(env.count("SELECT count(*) FROM triple_term").await > 0, "the workload reaches level 3");
    assert_readers_equal(&client, "public").await;
    assert_readers_equal(&client, "snapshot").await;
    let logged = env.count(EVENT_LOG).await;
    // An application's own view on a reader view must survive every switch.
    client.batch_execute("CREATE VIEW app_atoms AS SELECT term_id, data FROM readers.atom").await.unwrap();
    let app_atoms = digest(&client, "app_atoms").await;

    let (ok, out) = env.engine_subcommand(&["rollback", "--to", "reference"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("readers mode: reference"), "{out}");
    assert!(out.contains("readers.atom") && out.contains("<- snapshot.atom (reference view)"), "{out}");
    assert_eq!(readers_mode().await, "reference");
    assert_readers_equal(&client, "snapshot").await;
    assert_readers_equal(&client, "public").await;
    assert_eq!(digest(&client, "app_atoms").await, app_atoms);
    assert_eq!(env.count(EVENT_LOG).await, logged, "switching readers leaves the event log alone");

    // The engine and the worker keep going while readers are on the reference views.
    let (_, triples) = shared_pair_messages();
    env.xadd_all(&counter_vault_messages(&triples[0], 7, 500)).await;
    env.run(env.config()).await;
    run_workers(&worker_config(&env), 1, None).await;
    assert_eq!(env.count(EVENT_LOG).await, logged + 2, "new events are logged");
    env.assert_matches_reference().await;
    assert_readers_equal(&client, "public").await;

    // Back to the maintained tables: checked against the reference views first.
    let (ok, out) = env.engine_subcommand(&["rollback", "--to", "maintained"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("readers mode: maintained"), "{out}");
    assert_eq!(readers_mode().await, "maintained");
    assert_readers_equal(&client, "public").await;
    assert_readers_equal(&client, "snapshot").await;

    // Only some tables, e.g. while the analytics tier is in doubt.
    let (ok, out) =
        env.engine_subcommand(&["rollback", "--to", "reference", "--tables", "triple_term,triple_vault"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("readers mode: mixed") && out.contains("<- snapshot.triple_term"), "{out}");
    assert!(out.contains("<- public.atom"), "{out}");
    let (ok, out) = doctor(&env).await;
    assert!(ok && line_with(&out, "readers are mixed").contains("WARN"), "{out}");

    // Maintained tables that went wrong: going back is refused until they are repaired.
    client.batch_execute("UPDATE triple_term SET total_assets = total_assets + 1").await.unwrap();
    let (ok, out) = env.engine_subcommand(&["rollback", "--to", "maintained"]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("differ from the reference views") && out.contains("triple_term"), "{out}");
    assert_eq!(readers_mode().await, "mixed", "readers stay where they were");
    let rebuilt = client.query("SELECT * FROM rebuild_from_reference(ARRAY['triple_term'])", &[]).await.unwrap();
    // The pair rows are sums of triple_term rows kept by delta: rebuilt with it.
    let names: Vec<String> = rebuilt.iter().map(|r| r.get(0)).collect();
    assert_eq!(names, ["triple_term", "predicate_object", "subject_predicate"]);
    assert_eq!(rebuilt[0].get::<_, i64>(1), env.count("SELECT count(*) FROM snapshot.triple_term").await);
    let (ok, out) = env.engine_subcommand(&["rollback", "--to", "maintained"]).await;
    assert!(ok, "repaired tables pass the check: {out}");
    assert_eq!(readers_mode().await, "maintained");
    assert_readers_equal(&client, "snapshot").await;
    client.batch_execute("UPDATE atom SET label = 'wrong'").await.unwrap();
    let (ok, out) = env.engine_subcommand(&["rollback", "--to", "maintained", "--tables", "atom"]).await;
    assert!(!ok, "{out}");
    let (ok, out) = env.engine_subcommand(&["rollback", "--to", "maintained", "--no-verify"]).await;
    assert!(ok, "{out}");
    // A full rebuild: every table equals the log's recompute again.
    client.query("SELECT * FROM rebuild_from_reference()", &[]).await.unwrap();
    env.assert_matches_reference().await;
    assert_readers_equal(&client, "snapshot").await;

    let (ok, out) = env.engine_subcommand(&["rollback", "--to", "reference", "--tables", "nope"]).await;
    assert!(!ok && out.contains("unknown reader table"), "{out}");
    let (ok, out) = env.engine_subcommand(&["rollback"]).await;
    assert!(ok && out.contains("readers mode: maintained"), "{out}");
    assert_eq!(env.count(EVENT_LOG).await, logged + 2);
    env.cleanup().await;
}

fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

/// GET over HTTP/1.0 (no chunked bodies): (status, body).
async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.split_whitespace().nth(1)?.parse().ok()?, body.to_owned()))
}

/// Metric names in a Prometheus exposition (samples and `# TYPE` lines).
fn exported_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(rest) => rest.split_whitespace().next(),
            None if l.starts_with('#') || l.trim().is_empty() => None,
            None => l.split(['{', ' ']).next(),
        })
        .map(str::to_owned)
        .collect()
}

/// Σ of the samples of `name` (any labels).
fn sample_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every metric name of ours (`redis_postgres_sync_…`, `analytics_worker_…`) in a file.
fn referenced_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| t.starts_with("redis_postgres_sync_") || t.starts_with("analytics_worker_"))
        .map(str::to_owned)
        .collect()
}

fn dashboard_and_alert_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/grafana"))
        .expect("deploy/grafana")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.push(repo().join("deploy/prometheus/alerts.yml"));
    files
}

/// Every metric name the dashboards and alerts reference is in `exported` (`when`: for the
/// message).
fn assert_dashboards_and_alerts_find(exported: &BTreeSet<String>, when: &str) {
    let mut checked = 0;
    for file in dashboard_and_alert_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let names = referenced_names(&text);
        assert!(!names.is_empty(), "{} references no metric", file.display());
        let missing: Vec<&String> = names.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "{} references metrics not exported {when}: {missing:?}\nexported: {exported:?}",
            file.display()
        );
        checked += names.len();
    }
    assert!(checked > 20);
}

/// The first /metrics a starting process serves.
async fn first_answer(addr: &str, process: &Running) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, body)) = http_get(addr, "/metrics").await {
            return body;
        }
        assert!(Instant::now() < deadline, "no /metrics on {addr} within 30 s:\n{}", process.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn spawn(mut cmd: Command, tag: &str) -> Running {
        let log = std::env::temp_dir().join(format!("rps-ops-{tag}-{}.log", std::process::id()));
        let file = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn");
        Running { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as a container runtime stops it; the process must exit 0 on its own.
    async fn stop(mut self) {
        let pid = self.child.id().expect("still running").to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill");
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits within 30 s of SIGTERM")
            .unwrap();
        assert!(status.success(), "exit after SIGTERM: {status}\n{}", self.log());
        let _ = std::fs::remove_file(&self.log);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_binaries_export_every_metric_the_dashboard_and_alerts_use() {
    let mut env = TestEnv::new("metrics").await;
    let (engine_addr, worker_addr) = (free_addr(), free_addr());

    let mut engine = env.engine_command();
    engine
        .args(["--metrics-addr", &engine_addr, "--monitor-interval-secs", "1"])
        .env("BLOCK_MS", "100")
        .env("CONSUMER_NAME", "ops-metrics")
        .env("RUST_LOG", "info");
    let engine = Running::spawn(engine, "engine");
    let mut worker = Command::new(binary("analytics-worker"));
    worker
        .args(["--database-url", &env.database_url, "--stream", &env.term_updates_stream()])
        .args(["--metrics-addr", &worker_addr, "--block-ms", "100"])
        .env("REDIS_URL", REDIS)
        .env("RUST_LOG", "info");
    let worker = Running::spawn(worker, "worker");

    // Before the first event, as soon as each answers: every series the dashboard and the
    // alerts use is there already (zeros, empty histograms, the first lag observation).
    let engine_first = first_answer(&engine_addr, &engine).await;
    let worker_first = first_answer(&worker_addr, &worker).await;
    let first: BTreeSet<String> =
        exported_names(&engine_first).union(&exported_names(&worker_first)).cloned().collect();
    assert_dashboards_and_alerts_find(&first, "before the first event");
    for stage in rps::runtime::telemetry::STAGES {
        let series = format!("{}_count{{stage=\"{stage}\"}} 0", rps::runtime::telemetry::STAGE_SECONDS);
        assert!(engine_first.contains(&series), "no {series} before the first event:\n{engine_first}");
    }
    for reason in rps::pg::error::RETRY_REASONS.into_iter().chain(rps::ingest::apply::RETRY_REASONS) {
        let series = format!("{}{{reason=\"{reason}\"}} 0", rps::runtime::telemetry::BATCH_RETRIES);
        assert!(engine_first.contains(&series), "no {series} before the first event");
    }
    for stream in &env.streams {
        let series = format!("{}{{stream=\"{stream}\"}} 0", rps::runtime::telemetry::STREAM_LAG);
        assert!(engine_first.contains(&series), "no {series} before the first event:\n{engine_first}");
    }

    feed_samples(&mut env).await;
    let (pairs, _) = shared_pair_messages();
    env.xadd_all(&pairs).await;
    env.xadd(1, b"not json at all").await;
    let expected_events = sample_events() + pairs.len();

    // Until the traffic went all the way through: engine, outbox, worker, lag observed.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (engine_metrics, worker_metrics) = loop {
        let e = http_get(&engine_addr, "/metrics").await.map(|(_, b)| b).unwrap_or_default();
        let w = http_get(&worker_addr, "/metrics").await.map(|(_, b)| b).unwrap_or_default();
        let done = sample_sum(&e, rps::runtime::telemetry::EVENTS_PROCESSED) >= expected_events as f64
            && sample_sum(&e, rps::runtime::telemetry::EVENTS_FAILED) >= 1.0
            && sample_sum(&w, rps::runtime::telemetry::WORKER_PROCESSED) >= 1.0
            && e.contains(&format!("{}{{stream=\"{}\"}} 0", rps::runtime::telemetry::STREAM_LAG, env.streams[2]))
            && w.contains(rps::runtime::telemetry::WORKER_STREAM_LAG);
        if done {
            break (e, w);
        }
        assert!(
            Instant::now() < deadline,
            "traffic did not show in the metrics\nengine log:\n{}\nworker log:\n{}\nengine metrics:\n{e}\nworker metrics:\n{w}",
            engine.log(),
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    let exported: BTreeSet<String> =
        exported_names(&engine_metrics).union(&exported_names(&worker_metrics)).cloned().collect();
    assert_dashboards_and_alerts_find(&exported, "after traffic");
    // The seed's names, under exactly those names.
    for name in [
        "redis_postgres_sync_events_processed_total",
        "redis_postgres_sync_events_failed_total",
        "redis_postgres_sync_cascade_duration_seconds_bucket",
        "analytics_worker_term_updates_processed_total",
        "analytics_worker_batch_size_bucket",
        "analytics_worker_lag_seconds",
    ] {
        assert!(exported.contains(name), "{name} is not exported");
    }
    for stream in &env.streams {
        for gauge in [
            rps::runtime::telemetry::STREAM_LAG,
            rps::runtime::telemetry::STREAM_PENDING,
            rps::runtime::telemetry::STREAM_LENGTH,
        ] {
            assert!(engine_metrics.contains(&format!("{gauge}{{stream=\"{stream}\"}}")), "{gauge} for {stream}");
        }
    }
    assert!(exported.contains(rps::runtime::telemetry::OUTBOX_BACKLOG));
    // No reorg in this traffic: the gauges read the database and say so.
    for gauge in [rps::runtime::telemetry::REORG_UNBASED_SEARCHES, rps::runtime::telemetry::REORG_BASES] {
        assert!(engine_metrics.lines().any(|l| l == format!("{gauge} 0")), "{gauge} is not 0:\n{engine_metrics}");
    }

    // /health: 200 with the lag total and the last commit. The last acks may postdate the
    // last observation by one monitor interval.
    let health = loop {
        let (status, body) = http_get(&engine_addr, "/health").await.expect("engine /health");
        assert_eq!(status, 200, "{body}");
        let health: serde_json::Value = serde_json::from_str(&body).expect("JSON health");
        if health["lag"] == 0 && health["pending"] == 0 {
            break health;
        }
        assert!(Instant::now() < deadline, "lag and pending never reached 0: {health}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(health["status"], "ok", "{health}");
    assert!(health.get("last_commit_unix").is_none(), "one last-commit field: {health}");
    assert!(health["last_commit_age_seconds"].as_i64().is_some_and(|a| (0..120).contains(&a)), "{health}");
    // The `health` subcommand (the containers' probe) agrees: by URL, and by the metrics
    // address from the environment the service runs with.
    let probe = Command::new(binary("redis-postgres-sync"))
        .args(["health", "--url", &format!("http://{engine_addr}/health")])
        .output()
        .await
        .unwrap();
    assert!(probe.status.success(), "{}", String::from_utf8_lossy(&probe.stderr));
    let probe = Command::new(binary("analytics-worker"))
        .arg("health")
        .env("ANALYTICS_METRICS_ADDR", &worker_addr)
        .output()
        .await
        .unwrap();
    assert!(probe.status.success(), "{}", String::from_utf8_lossy(&probe.stderr));
    assert!(String::from_utf8_lossy(&probe.stdout).contains("\"status\":\"ok\""));
    let (status, body) = http_get(&worker_addr, "/health").await.expect("worker /health");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(health["lag"].is_u64() && health["pending"].is_u64(), "{health}");

    // However often /health is called, each binary keeps one connection per dependency.
    let calls = (0..40).map(|i| {
        let addr = if i % 2 == 0 { engine_addr.clone() } else { worker_addr.clone() };
        tokio::spawn(async move { http_get(&addr, "/health").await.map(|(status, _)| status) })
    });
    for call in calls.collect::<Vec<_>>() {
        assert_eq!(call.await.unwrap().expect("/health"), 200);
    }
    let client = env.client().await;
    let mut redis = env.redis.clone();
    let clients: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut redis).await.unwrap();
    for process in [&engine, &worker] {
        let name = format!("rps-health-{}", process.child.id().expect("running"));
        let postgres: i64 = client
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", &[&name])
            .await
            .unwrap()
            .get(0);
        let redis = clients.lines().filter(|l| l.contains(&format!(" name={name} "))).count();
        assert_eq!((postgres, redis), (1, 1), "{name}: health connections to PostgreSQL and Redis");
    }

    engine.stop().await;
    worker.stop().await;
    env.cleanup().await;
}

/// promtool's own checks: the config and rules load, and the alerts fire exactly in the
/// situations alerts.test.yml describes. scripts/test.sh provides promtool (PROMTOOL);
/// without one this test fails rather than pass unchecked.
#[tokio::test]
async fn alert_rules_pass_promtool() {
    let promtool = std::env::var_os("PROMTOOL").map(PathBuf::from).or_else(|| {
        std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join("promtool")).find(|p| p.is_file())
    });
    let promtool = promtool.expect("promtool not found: run scripts/test.sh (it provides one) or set PROMTOOL");
    let promtool = std::fs::canonicalize(&promtool).unwrap_or_else(|e| panic!("{}: {e}", promtool.display()));
    let dir = repo().join("deploy/prometheus");
    for args in [["check", "config", "prometheus.yml"], ["test", "rules", "alerts.test.yml"]] {
        let out = Command::new(&promtool).args(args).current_dir(&dir).output().await.expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
