//! Deployable against managed services: secrets never printed, permanent errors end a run
//! at once with a documented exit code while transient ones are retried. The binaries run
//! as child processes against private servers that really check passwords (a PostgreSQL
//! cluster with scram-sha-256, a Redis with `requirepass`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::env::{PG, REDIS};
use integration_tests::faults::{binary, free_port, PrivatePostgres, PrivateRedis};

const USER_PASSWORD: &str = "Right-Passw0rd-1";
const REDIS_PASSWORD: &str = "Right-Redis-Passw0rd-2";
/// The wrong password each case gives, and one holding an unencoded `@`.
const WRONG: &str = "Wr0ng-S3cret-91827";
const WRONG_AT: &str = "Wr0ng@S3cret-91827";
/// Pieces of the wrong passwords that must never be printed (a naive redaction of a password
/// holding `@` would print what follows the `@`).
const LEAKS: [&str; 3] = ["Wr0ng-S3cret", "S3cret-91827", "Wr0ng@"];

/// How a child process ended: its exit code (`None` if still running at the limit and
/// killed) and everything it printed.
struct Ended {
    code: Option<i32>,
    output: String,
    took: Duration,
}

fn run(program: &str, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Ended {
    let started = Instant::now();
    let mut child = Command::new(binary(program))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the binary");
    let code = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status.code();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("output");
    let output = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ended { code, output, took: started.elapsed() }
}

/// Environment of an engine or worker run on these servers.
fn engine_env<'a>(database_url: &'a str, redis_url: &'a str, streams: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("DATABASE_URL", database_url),
        ("REDIS_URL", redis_url),
        ("STREAMS", streams),
        ("CREATE_STREAMS", "true"),
        ("EXIT_WHEN_IDLE", "true"),
        ("TERM_UPDATES_STREAM", "rps_t_hardening_updates"),
        ("METRICS_ADDR", "127.0.0.1:0"),
        ("ANALYTICS_METRICS_ADDR", "127.0.0.1:0"),
    ]
}

/// A private cluster where role `app` logs in with a password over TCP (scram-sha-256).
async fn password_postgres() -> PrivatePostgres {
    let pg = PrivatePostgres::start("secrets", &[]).await.expect("a private PostgreSQL cluster");
    let admin = rps::pg::connect_one(&pg.url("postgres")).await.expect("connect as postgres");
    admin.batch_execute(&format!("CREATE ROLE app LOGIN CREATEDB PASSWORD '{USER_PASSWORD}'")).await.unwrap();
    let hba = "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n";
    pg.reconfigure(hba, &[]).await.expect("password authentication");
    pg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_binary_prints_a_password_in_any_form() {
    let pg = password_postgres().await;
    let redis = PrivateRedis::start_with("secrets", &["--requirepass".into(), REDIS_PASSWORD.into()], false)
        .await
        .expect("a private redis-server");
    let (port, rport) = (pg.port(), redis.port);
    let good_db = format!("postgres://app:{USER_PASSWORD}@127.0.0.1:{port}/rps_secrets");
    let good_redis = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{rport}");
    let bad_dbs = [
        format!("postgres://app:{WRONG}@127.0.0.1:{port}/rps_secrets"),
        format!("postgres://app:{WRONG_AT}@127.0.0.1:{port}/rps_secrets"),
        format!("postgres://app@127.0.0.1:{port}/rps_secrets?password={WRONG}"),
        format!("host=127.0.0.1 port={port} user=app password={WRONG} dbname=rps_secrets"),
        format!("host=127.0.0.1 port={port} user=app password='{WRONG} x' dbname=rps_secrets"),
    ];
    let bad_redises =
        [format!("redis://:{WRONG}@127.0.0.1:{rport}"), format!("redis://default:{WRONG_AT}@127.0.0.1:{rport}")];
    let streams = "rps_t_hardening_a,rps_t_hardening_b";
    let limit = Duration::from_secs(30);
    let mut checked = 0;
    let mut check = |what: String, ended: Ended, expected: Option<i32>, clear: &[&str]| {
        for leak in LEAKS {
            assert!(!ended.output.contains(leak), "{what} printed {leak:?}:\n{}", ended.output);
        }
        assert_eq!(
            ended.code, expected,
            "{what} ended with {:?} after {:?}:\n{}",
            ended.code, ended.took, ended.output
        );
        let lower = ended.output.to_lowercase();
        assert!(clear.iter().any(|c| lower.contains(c)), "{what}: no clear reason in:\n{}", ended.output);
        checked += 1;
    };
    let pg_refusal = ["password authentication failed"];
    let redis_refusal = ["authentication failed", "wrongpass", "invalid username-password"];
    for db in &bad_dbs {
        let env = engine_env(db, &good_redis, streams);
        check(format!("engine with {db}"), run("redis-postgres-sync", &[], &env, limit), Some(3), &pg_refusal);
        check(format!("worker with {db}"), run("analytics-worker", &[], &env, limit), Some(3), &pg_refusal);
        check(format!("verify with {db}"), run("redis-postgres-sync", &["verify"], &env, limit), Some(3), &pg_refusal);
        check(format!("doctor with {db}"), run("redis-postgres-sync", &["doctor"], &env, limit), Some(1), &pg_refusal);
    }
    for r in &bad_redises {
        let env = engine_env(&good_db, r, streams);
        check(format!("engine with {r}"), run("redis-postgres-sync", &[], &env, limit), Some(3), &redis_refusal);
        check(format!("worker with {r}"), run("analytics-worker", &[], &env, limit), Some(3), &redis_refusal);
        check(
            format!("doctor with {r}"),
            run("redis-postgres-sync", &["doctor"], &env, limit),
            Some(1),
            &redis_refusal,
        );
        let loadgen = run("loadgen", &["generate", "--events", "10", "--redis-url", r], &[], limit);
        check(format!("loadgen with {r}"), loadgen, Some(1), &redis_refusal);
    }
    assert_eq!(checked, 5 * 4 + 2 * 4);
    // With the right passwords the same run works.
    let ok = run("redis-postgres-sync", &[], &engine_env(&good_db, &good_redis, streams), limit);
    assert_eq!(ok.code, Some(0), "{}", ok.output);
    assert!(!ok.output.contains(USER_PASSWORD) && !ok.output.contains(REDIS_PASSWORD), "{}", ok.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_end_the_run_at_once_and_transient_ones_are_retried() {
    let database = |db: &str| format!("{PG}/{db}");
    let existing = "rps_t_hardening_exists";
    let mut con = rps::stream::connect(REDIS).await.unwrap();
    let _: String =
        redis::cmd("XADD").arg(existing).arg("*").arg("payload").arg("{}").query_async(&mut con).await.unwrap();
    let base = database("rps_t_hardening");
    let env = |db: &str, streams: &str| {
        let mut e = engine_env(db, REDIS, streams);
        e.retain(|(k, _)| *k != "CREATE_STREAMS");
        e.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>()
    };
    let unknown_role = "postgres://no_such_role_rps@127.0.0.1:5432/rps_t_hardening".to_string();
    // (what, program, args, database, streams, exit code)
    type Case<'a> = (&'a str, &'a str, Vec<&'a str>, String, &'a str, i32);
    let cases: Vec<Case> = vec![
        ("an invalid database URL", "redis-postgres-sync", vec![], "postgres://[::1".into(), existing, 2),
        ("an unknown role", "redis-postgres-sync", vec![], unknown_role.clone(), existing, 3),
        ("an empty stream list", "redis-postgres-sync", vec!["--streams", ""], base.clone(), existing, 2),
        ("a stream that does not exist", "redis-postgres-sync", vec![], base.clone(), "rps_t_no_such_stream", 2),
        ("pool size 0", "redis-postgres-sync", vec!["--pool-size", "0"], base.clone(), existing, 2),
        ("block-ms 0", "redis-postgres-sync", vec!["--block-ms", "0"], base.clone(), existing, 2),
        (
            "an unresolvable metrics address",
            "redis-postgres-sync",
            vec!["--metrics-addr", "no-such-host.invalid:1"],
            base.clone(),
            existing,
            2,
        ),
        ("verify with an unknown role", "redis-postgres-sync", vec!["verify"], unknown_role.clone(), existing, 3),
        ("a worker with an unknown role", "analytics-worker", vec![], unknown_role.clone(), existing, 3),
        ("a worker with an invalid URL", "analytics-worker", vec![], "postgres://[::1".into(), existing, 2),
        (
            "a host name for the metrics address",
            "redis-postgres-sync",
            vec!["--metrics-addr", "localhost:0"],
            base.clone(),
            existing,
            0,
        ),
    ];
    for (what, program, args, db, streams, code) in cases {
        let env = env(&db, streams);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let ended = run(program, &args, &env, Duration::from_secs(30));
        assert_eq!(ended.code, Some(code), "{what}: {:?} after {:?}\n{}", ended.code, ended.took, ended.output);
        let lines = ended.output.lines().filter(|l| l.starts_with("error:")).count();
        assert_eq!(lines, usize::from(code != 0), "{what}: one clear line\n{}", ended.output);
        assert!(ended.took < Duration::from_secs(10), "{what} took {:?}", ended.took);
    }
    // A server that refuses the engine's own schema SQL (here a function of the schema that
    // an older, incompatible definition occupies): the same SQL would fail on every retry.
    let refusing = database("rps_t_hardening_schema");
    rps::pg::schema::prepare(&refusing).await.expect("the schema applies");
    let client = rps::pg::connect_one(&refusing).await.unwrap();
    client
        .batch_execute(
            "DROP VIEW snapshot.position CASCADE; DROP FUNCTION snapshot.positions_of(text[], text[]); \
             CREATE FUNCTION snapshot.positions_of(accounts text[], terms text[]) RETURNS int LANGUAGE sql AS 'SELECT 1'",
        )
        .await
        .unwrap();
    drop(client);
    let env_refusing = env(&refusing, existing);
    let env_refusing: Vec<(&str, &str)> = env_refusing.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let ended = run("redis-postgres-sync", &[], &env_refusing, Duration::from_secs(30));
    assert_eq!(ended.code, Some(3), "an incompatible schema ends the run:\n{}", ended.output);
    assert!(ended.output.contains("refuses the engine's own schema"), "{}", ended.output);
    assert!(ended.took < Duration::from_secs(10), "at once, not after retries: {:?}", ended.took);
    // Nothing listens on this port: an outage, retried until stopped.
    let down = format!("postgres://postgres@127.0.0.1:{}/x", free_port());
    let env = env(&down, existing);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let ended = run("redis-postgres-sync", &[], &env, Duration::from_secs(3));
    assert_eq!(ended.code, None, "a refused connection is retried, not fatal:\n{}", ended.output);
    assert!(ended.output.contains("retrying"), "{}", ended.output);
    // The engine that ran on it dead-lettered its "{}" entry: its dead-letter stream goes too.
    let dlq = rps::stream::dead_letter_stream(existing);
    let _: i64 = redis::cmd("DEL").arg(existing).arg(&dlq).query_async(&mut con).await.unwrap();
    let admin = rps::pg::connect_one(&database("postgres")).await.unwrap();
    admin.batch_execute("DROP DATABASE IF EXISTS rps_t_hardening WITH (FORCE)").await.unwrap();
    admin.batch_execute("DROP DATABASE IF EXISTS rps_t_hardening_schema WITH (FORCE)").await.unwrap();
}

/// Peak resident memory of a process so far, in bytes (VmHWM).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process runs");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

/// Run an engine on `env` until its group has drained every stream, and return its peak
/// memory; the engine is stopped afterwards.
async fn drain_and_measure(env: &integration_tests::TestEnv, vars: &[(&str, &str)]) -> u64 {
    let mut engine = integration_tests::faults::Proc::engine(env, REDIS, "memory", vars);
    integration_tests::faults::wait_drained(REDIS, &env.streams, "redis-postgres-sync", Duration::from_secs(120)).await;
    let peak = peak_rss(engine.child.id());
    engine.signal("TERM");
    assert!(engine.wait_for(Duration::from_secs(15)).is_some_and(|(s, _)| s.success()), "the engine stops");
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_within_the_read_budget_whatever_the_entries() {
    use integration_tests::faults::{feed_workload, logged_events, noisy_workload};
    const BUDGET: u64 = 32 << 20;
    let budget = BUDGET.to_string();
    let vars = [("MAX_READ_BYTES", budget.as_str()), ("MAX_ENTRY_BYTES", "8388608"), ("DEAD_LETTER_MAXLEN", "5")];
    let work = noisy_workload(6_000, 71);
    // The baseline: the same traffic without the hostile entries.
    let calm = integration_tests::TestEnv::new("memory_calm").await;
    feed_workload(&calm, REDIS, &work).await;
    let baseline = drain_and_measure(&calm, &vars).await;
    calm.cleanup().await;

    let mut hostile = integration_tests::TestEnv::new("memory_hostile").await;
    feed_workload(&hostile, REDIS, &work).await;
    let huge = vec![b'x'; 40 << 20];
    for _ in 0..10 {
        hostile.xadd(2, &huge).await;
    }
    drop(huge);
    let peak = drain_and_measure(&hostile, &vars).await;
    eprintln!("peak RSS {} MiB, baseline {} MiB, budget {} MiB", peak >> 20, baseline >> 20, BUDGET >> 20);
    assert!(peak <= baseline + BUDGET, "peak {peak} over baseline {baseline} + budget {BUDGET}");
    assert_eq!(logged_events(&hostile).await as usize, work.stats.events, "every good event applied");
    // The dead-letter stream keeps its last 5 entries, each small: the ten payloads' dead
    // letters hold their size and first KiB, not 40 MB.
    let dead = hostile.dead_letters(2).await;
    assert_eq!(dead.len(), 5, "trimmed to DEAD_LETTER_MAXLEN");
    for (error, payload, _, _) in &dead {
        assert!(error.contains("entry of 41943040 bytes exceeds the 8388608-byte limit"), "{error}");
        assert_eq!(payload.len(), 1024);
    }
    hostile.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_trims_term_updates_it_has_finished() {
    use integration_tests::analytics::{run_workers, worker_config};
    use integration_tests::faults::{feed_workload, noisy_workload};
    let env = integration_tests::TestEnv::new("trim").await;
    feed_workload(&env, REDIS, &noisy_workload(4_000, 72)).await;
    let mut config = env.config();
    config.batch_size = 20;
    env.run(config).await;
    let mut redis = env.redis.clone();
    let updates = env.term_updates_stream();
    let published: usize = redis::cmd("XLEN").arg(&updates).query_async(&mut redis).await.unwrap();
    assert!(published > 5, "the engine published term updates ({published})");
    let mut worker = worker_config(&env);
    worker.batch_size = 2;
    run_workers(&worker, 1, None).await;
    let left: usize = redis::cmd("XLEN").arg(&updates).query_async(&mut redis).await.unwrap();
    assert!(left <= 1, "the drained stream keeps at most its last delivered entry, not {left}");
    integration_tests::analytics::assert_analytics_match(&env).await;
    env.cleanup().await;
}

/// The reader decodes one batch ahead of the writer, never two: it reads only once the
/// writer's queue has room. Entries it has read are pending in the group, so the pending
/// count says how many batches it took while the writer (here: nobody) did not keep up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_reads_one_batch_ahead_of_the_writer_at_most() {
    use integration_tests::faults::pending_on;
    use rps::ingest::read::{read_loop, Work};
    const COUNT: usize = 10;
    let mut env = integration_tests::TestEnv::new("read_ahead").await;
    let payload = br#"{"event_name":"Unknown","event_data":{}}"#;
    for _ in 0..5 * COUNT {
        env.xadd(0, payload).await;
    }
    let mut config = env.config();
    config.batch_size = COUNT;
    let reader = rps::stream::GroupReader::connect(REDIS, config.reader()).await.expect("connect a group reader");
    let (switch, stop) = rps::runtime::shutdown::StopSwitch::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let task = tokio::spawn(read_loop(reader, tx, 1, Default::default(), stop));
    // Pending entries once the reader has settled: it has read at least `least` and then
    // nothing more for half a second.
    let (streams, group) = (&env.streams, &config.group);
    let settled = |least: usize| async move {
        let started = std::time::Instant::now();
        while pending_on(REDIS, streams, group).await < least {
            assert!(started.elapsed() < Duration::from_secs(30), "the reader reads {least} entries");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        pending_on(REDIS, streams, group).await
    };
    assert_eq!(settled(COUNT).await, COUNT, "one batch read while the queue is full");
    let Some(Work::Batch(first)) = rx.recv().await else { panic!("a batch") };
    assert_eq!(first.acks.len(), COUNT);
    assert_eq!(settled(2 * COUNT).await, 2 * COUNT, "the next read once there is room");
    switch.stop();
    drop(rx);
    task.await.expect("the reader ends").expect("no decode panic");
    env.cleanup().await;
}
