//! TLS against private servers whose certificates the test makes: a PostgreSQL cluster that
//! accepts TLS connections only (`ssl = on`, `hostssl` rules alone) and a Redis that speaks
//! TLS only (`--tls-port`, no plain port). Verified connections work, a wrong authority, a
//! wrong name and plain text are refused, and the engine, worker, doctor and loadgen run
//! end to end over TLS.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::faults::{binary, PrivatePostgres, PrivateRedis};
use integration_tests::tls::Pki;
use rps::runtime::exit::{Fatal, Permanence};

/// A directory of the test's own for certificate files, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("rps-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A cluster reachable only over TLS, with a certificate for `localhost` signed by `pki`.
async fn tls_postgres(pki: &Pki) -> PrivatePostgres {
    let pg = PrivatePostgres::start("tls", &[]).await.expect("a private PostgreSQL cluster");
    pg.write_file("server.crt", pki.server_cert_pem.as_bytes()).unwrap();
    pg.write_file("server.key", pki.server_key_pem.as_bytes()).unwrap();
    let hba = "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n";
    let settings = [("ssl", "on"), ("ssl_cert_file", "server.crt"), ("ssl_key_file", "server.key")];
    pg.reconfigure(hba, &settings).await.expect("TLS only");
    pg
}

async fn tls_redis(pki: &Pki, dir: &Dir) -> PrivateRedis {
    let (cert, key, ca) = (
        dir.write("redis.crt", &pki.server_cert_pem),
        dir.write("redis.key", &pki.server_key_pem),
        dir.write("ca.pem", &pki.ca_pem),
    );
    let args: Vec<String> =
        ["--tls-cert-file", &cert, "--tls-key-file", &key, "--tls-ca-cert-file", &ca, "--tls-auth-clients", "no"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    PrivateRedis::start_with("tls", &args, true).await.expect("a private TLS redis-server")
}

/// Whether the connection `url` opens is encrypted (PostgreSQL's own view).
async fn encrypted(url: &str) -> Result<bool, rps::pg::pool::ConnectError> {
    let client = rps::pg::connect_one(url).await?;
    Ok(client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0))
}

fn refused(error: &impl Permanence) -> bool {
    matches!(error.fatal("connecting"), Some(Fatal::Refused(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verifies_what_sslmode_asks_and_refuses_the_rest() {
    let pki = Pki::new(&["localhost"]);
    let other = Pki::new(&["localhost"]);
    let dir = Dir::new("pg");
    let (ca, wrong_ca) = (dir.write("ca.pem", &pki.ca_pem), dir.write("other.pem", &other.ca_pem));
    let pg = tls_postgres(&pki).await;
    let port = pg.port();
    let url = |host: &str, params: &str| format!("postgres://postgres@{host}:{port}/postgres{params}");

    for ok in [
        url("localhost", &format!("?sslmode=verify-full&sslrootcert={ca}")),
        // The certificate names localhost, not 127.0.0.1: verify-ca checks the chain only.
        url("127.0.0.1", &format!("?sslmode=verify-ca&sslrootcert={ca}")),
        url("127.0.0.1", "?sslmode=require"),
        // No sslmode: libpq's default, prefer, encrypts when the server offers TLS.
        url("127.0.0.1", ""),
        format!("host=localhost port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert='{ca}'"),
    ] {
        assert!(encrypted(&ok).await.unwrap_or_else(|e| panic!("{ok}: {e}")), "{ok} is encrypted");
    }
    for (why, bad) in [
        ("a wrong authority", url("localhost", &format!("?sslmode=verify-full&sslrootcert={wrong_ca}"))),
        ("a wrong name", url("127.0.0.1", &format!("?sslmode=verify-full&sslrootcert={ca}"))),
        ("an authority the system does not trust", url("localhost", "?sslmode=verify-full")),
        ("plain text where TLS is required", url("127.0.0.1", "?sslmode=disable")),
    ] {
        let error = encrypted(&bad).await.err().unwrap_or_else(|| panic!("{why}: {bad} connected"));
        assert!(refused(&error), "{why} ends the run, not retried: {error}");
    }
    let error = encrypted(&url("localhost", "?sslmode=verify-full&sslrootcert=/no/such/ca.pem")).await.err().unwrap();
    assert!(matches!(error.fatal("connecting"), Some(Fatal::Config(_))), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_verifies_against_the_given_authority() {
    let pki = Pki::new(&["localhost", "127.0.0.1"]);
    let other = Pki::new(&["localhost", "127.0.0.1"]);
    let dir = Dir::new("redis");
    let (ca, wrong_ca) = (dir.write("trusted.pem", &pki.ca_pem), dir.write("other.pem", &other.ca_pem));
    let redis = tls_redis(&pki, &dir).await;
    let port = redis.port;
    // Both kinds of connection: redis-rs's, and the one whose replies the group reader
    // parses itself.
    let ping = |url: String| async move {
        let mut con = rps::stream::connect(&url).await?;
        let pong = redis::cmd("PING").query_async::<String>(&mut con).await?;
        let mut socket = rps::stream::socket::RespSocket::connect(&url).await?;
        socket.send(&redis::cmd("PING")).await?;
        assert_eq!(socket.header().await?, rps::stream::socket::Header::Simple(pong.clone()));
        Ok::<_, redis::RedisError>(pong)
    };
    let socket = |url: String| async move { rps::stream::socket::RespSocket::connect(&url).await.map(|_| ()) };
    assert_eq!(ping(format!("rediss://127.0.0.1:{port}?cacert={ca}")).await.unwrap(), "PONG");
    assert_eq!(ping(format!("rediss://127.0.0.1:{port}/#insecure")).await.unwrap(), "PONG");
    for refuse in [format!("rediss://127.0.0.1:{port}?cacert={wrong_ca}"), format!("rediss://127.0.0.1:{port}")] {
        let error = ping(refuse.clone()).await.unwrap_err();
        assert!(refused(&error), "{refuse}: a wrong or untrusted authority ends the run: {error}");
        let error = socket(refuse.clone()).await.unwrap_err();
        assert!(refused(&error), "{refuse}: the reader's own connection refuses it too: {error}");
    }
    assert!(ping(format!("redis://127.0.0.1:{port}")).await.is_err(), "plain text to a TLS port is refused");
}

/// Run a binary to its end (at most a minute); its exit code and output.
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = Command::new(binary(program))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_runs_over_tls_end_to_end() {
    let pki = Pki::new(&["localhost", "127.0.0.1"]);
    let other = Pki::new(&["localhost", "127.0.0.1"]);
    let dir = Dir::new("e2e");
    let (ca, wrong_ca) = (dir.write("trusted.pem", &pki.ca_pem), dir.write("other.pem", &other.ca_pem));
    let pg = tls_postgres(&pki).await;
    let redis = tls_redis(&pki, &dir).await;
    let database = format!("postgres://postgres@localhost:{}/rps_tls?sslmode=verify-full&sslrootcert={ca}", pg.port());
    let redis_url = format!("rediss://127.0.0.1:{}?cacert={ca}", redis.port);
    let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/mixed-encodings.jsonl");
    let (code, out) = run("loadgen", &["feed", "--file", samples, "--redis-url", &redis_url], &[]);
    assert_eq!(code, Some(0), "loadgen feeds over TLS:\n{out}");
    let env = [
        ("DATABASE_URL", database.as_str()),
        ("REDIS_URL", redis_url.as_str()),
        ("EXIT_WHEN_IDLE", "true"),
        ("ANALYTICS_EXIT_WHEN_IDLE", "true"),
        ("CREATE_STREAMS", "true"),
        ("METRICS_ADDR", "127.0.0.1:0"),
        ("ANALYTICS_METRICS_ADDR", "127.0.0.1:0"),
    ];
    for (program, args) in [
        ("redis-postgres-sync", vec![]),
        ("analytics-worker", vec![]),
        ("redis-postgres-sync", vec!["verify", "--analytics"]),
    ] {
        let (code, out) = run(program, &args, &env);
        assert_eq!(code, Some(0), "{program} {args:?} over TLS:\n{out}");
    }
    let (code, out) = run("redis-postgres-sync", &["doctor"], &env);
    assert!(code == Some(0) && out.contains("doctor: 0 problems"), "doctor over TLS:\n{out}");
    let admin = rps::pg::connect_one(&database).await.unwrap();
    let logged: i64 = admin.query_one("SELECT count(*) FROM deposited_events", &[]).await.unwrap().get(0);
    assert!(logged > 0, "the samples were applied over TLS");
    // A wrong authority for either server: refused at once, exit code 3.
    let bad_pg = database.replace(&ca, &wrong_ca);
    let bad_redis = redis_url.replace(&ca, &wrong_ca);
    for (db, r) in [(bad_pg.as_str(), redis_url.as_str()), (database.as_str(), bad_redis.as_str())] {
        let env = [("DATABASE_URL", db), ("REDIS_URL", r), ("CREATE_STREAMS", "true"), ("METRICS_ADDR", "127.0.0.1:0")];
        let (code, out) = run("redis-postgres-sync", &[], &env);
        assert_eq!(code, Some(3), "a certificate from another authority:\n{out}");
    }
}
