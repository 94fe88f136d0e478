//! Private PostgreSQL and Redis servers: started on a free port under a temporary directory,
//! crashed and restarted at will, and removed when dropped. Tests that must break a server
//! (crash it, restart it) use these, never the shared local services; the bench uses a
//! private PostgreSQL to measure under settings it chooses.
//!
//! PostgreSQL runs from the binaries of the installed server (`PG_BINDIR`, else the newest
//! `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`). `initdb` refuses to run as root,
//! so as root every server command runs as the `postgres` user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("an ephemeral port")
}

/// A directory of our own under the system temp dir, emptied first.
fn scratch_dir(kind: &str, tag: &str, port: u16) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("rps-{kind}-{tag}-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A PostgreSQL cluster of our own (`initdb` + `pg_ctl`), trust authentication, user
/// `postgres`, listening on 127.0.0.1 only.
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    running: bool,
}

impl PrivatePostgres {
    /// `initdb` a new cluster with `settings` appended to its `postgresql.conf`, and start it.
    pub async fn start(tag: &str, settings: &[(&str, &str)]) -> Result<PrivatePostgres> {
        let bin = postgres_bindir()?;
        let port = free_port();
        let dir = scratch_dir("pg", tag, port)?;
        let mut pg = PrivatePostgres { bin, dir, port, running: false };
        pg.give_to_server_user(&pg.dir)?;
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &["-D", path(&data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
        )
        .await
        .context("initdb")?;
        let mut conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n",
            pg.dir.display()
        );
        for (key, value) in settings {
            conf.push_str(&format!("{key} = '{value}'\n"));
        }
        pg.append_conf(&conf)?;
        pg.start_again().await?;
        Ok(pg)
    }

    /// A hot standby of `primary` (which needs `wal_level` replica or higher, the default):
    /// `pg_basebackup -R` of it into a new directory, started on a port of its own. It
    /// streams the primary's WAL and answers read-only queries.
    pub async fn standby_of(primary: &PrivatePostgres, tag: &str) -> Result<PrivatePostgres> {
        let port = free_port();
        let dir = scratch_dir("pg", tag, port)?;
        let mut pg = PrivatePostgres { bin: primary.bin.clone(), dir, port, running: false };
        pg.give_to_server_user(&pg.dir)?;
        let data = pg.data_dir();
        let primary_port = primary.port.to_string();
        let args = [
            "-D",
            path(&data),
            "-h",
            "127.0.0.1",
            "-p",
            &primary_port,
            "-U",
            "postgres",
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        ];
        pg.run("pg_basebackup", &args).await.context("pg_basebackup")?;
        // The copied postgresql.conf names the primary's port and socket directory: the last
        // setting of a name wins, so appending ours is enough.
        pg.append_conf(&format!(
            "\nport = {port}\nunix_socket_directories = '{}'\nhot_standby = on\n",
            pg.dir.display()
        ))?;
        pg.start_again().await?;
        Ok(pg)
    }

    /// `postgres://postgres@127.0.0.1:<port>`, to which a database name is appended.
    pub fn base_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    pub fn url(&self, database: &str) -> String {
        format!("{}/{database}", self.base_url())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Crash the server for real: `pg_ctl stop -m immediate` (every process quits at once, no
    /// checkpoint; WAL still in shared memory is lost, and the next start runs crash recovery).
    pub async fn crash(&mut self) -> Result<()> {
        self.pg_ctl(&["stop", "-m", "immediate"]).await.context("pg_ctl stop -m immediate")?;
        self.running = false;
        Ok(())
    }

    /// Start the (stopped or crashed) server again and wait until it accepts connections.
    pub async fn start_again(&mut self) -> Result<()> {
        let log = self.dir.join("server.log");
        self.pg_ctl(&["start", "-l", path(&log)])
            .await
            .with_context(|| format!("pg_ctl start; the server log ends with:\n{}", tail(&log, 20)))?;
        self.running = true;
        Ok(())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Write a file into the data directory, owned by the server's user and readable by it
    /// alone (as PostgreSQL requires of a TLS key).
    pub fn write_file(&self, name: &str, contents: &[u8]) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.data_dir().join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        self.give_to_server_user(&path)
    }

    /// Replace `pg_hba.conf` and append `settings` to `postgresql.conf`, then reload.
    pub async fn reconfigure(&self, hba: &str, settings: &[(&str, &str)]) -> Result<()> {
        self.write_file("pg_hba.conf", hba.as_bytes())?;
        let lines: String = settings.iter().map(|(key, value)| format!("{key} = '{value}'\n")).collect();
        self.append_conf(&lines)?;
        self.pg_ctl(&["reload"]).await.context("pg_ctl reload")
    }

    /// Append lines to `postgresql.conf` (a later setting of a name overrides an earlier one).
    fn append_conf(&self, lines: &str) -> Result<()> {
        let conf_path = self.data_dir().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).context("reading postgresql.conf")?;
        text.push_str(lines);
        std::fs::write(&conf_path, text).context("writing postgresql.conf")
    }

    async fn pg_ctl(&self, args: &[&str]) -> Result<()> {
        let data = self.data_dir();
        let mut all = vec!["-D", path(&data), "-w", "-t", "120"];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all).await
    }

    /// Run one of the server's programs, as the `postgres` user when we are root.
    async fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let exe = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            tokio::process::Command::new(&exe)
        };
        let out = cmd.args(args).stdin(Stdio::null()).output().await.with_context(|| format!("running {program}"))?;
        if !out.status.success() {
            bail!(
                "{program} {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn give_to_server_user(&self, dir: &Path) -> Result<()> {
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres:"]).arg(dir).status().context("chown")?;
            if !status.success() {
                bail!("chown -R postgres: {} failed", dir.display());
            }
        }
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.data_dir();
            let program = self.bin.join("pg_ctl");
            let mut cmd = if is_root() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            };
            let args = ["-D", path(&data), "-m", "immediate", "-w", "stop"];
            let _ = cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

fn is_root() -> bool {
    // /proc/self belongs to the process's effective user.
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The last `lines` lines of a file, for error messages.
fn tail(file: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Where the installed PostgreSQL server's programs are.
pub fn postgres_bindir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    installed.sort();
    if let Some((_, bin)) = installed.pop() {
        return Ok(bin);
    }
    let out =
        Command::new("pg_config").arg("--bindir").output().context("no PostgreSQL server found: set PG_BINDIR")?;
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !bin.join("initdb").is_file() {
        bail!("no initdb under {} (pg_config --bindir): set PG_BINDIR", bin.display());
    }
    Ok(bin)
}

/// A Redis server of our own on a free port, persisting to an append-only file with fsync at
/// every write, so a SIGKILL loses nothing and a restart brings back every stream, consumer
/// group and pending entry.
pub struct PrivateRedis {
    pub port: u16,
    dir: PathBuf,
    /// Extra `redis-server` arguments (a password, TLS), kept for restarts.
    args: Vec<String>,
    /// The port speaks TLS only.
    tls: bool,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub async fn start(tag: &str) -> Result<PrivateRedis> {
        PrivateRedis::start_with(tag, &[], false).await
    }

    /// With extra `redis-server` arguments; with `tls`, the port is a `--tls-port` and no
    /// plain port is open (the caller passes the certificate arguments).
    pub async fn start_with(tag: &str, args: &[String], tls: bool) -> Result<PrivateRedis> {
        let port = free_port();
        let dir = scratch_dir("redis", tag, port)?;
        let mut r = PrivateRedis { port, dir, args: args.to_vec(), tls, child: None };
        r.launch().await?;
        Ok(r)
    }

    /// `redis://127.0.0.1:<port>` (without credentials).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn launch(&mut self) -> Result<()> {
        let port = self.port.to_string();
        let ports = if self.tls { ["--port", "0", "--tls-port", &port] } else { ["--port", &port, "--tls-port", "0"] };
        let child = Command::new("redis-server")
            .args(ports)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--dir"])
            .arg(&self.dir)
            .args(["--logfile", "redis.log"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("redis-server must be installed (scripts/services.sh installs it)")?;
        self.child = Some(child);
        for _ in 0..200 {
            if self.answers().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("private redis-server on port {} did not start; see {}", self.port, self.dir.join("redis.log").display())
    }

    /// Whether the server accepts connections (and, on a plain port, answers a PING, if only
    /// with a demand for a password).
    async fn answers(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut socket) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if self.tls {
            return true;
        }
        let mut reply = [0u8; 1];
        socket.write_all(b"PING\r\n").await.is_ok() && matches!(socket.read(&mut reply).await, Ok(1))
    }

    /// SIGKILL the server (connections drop at once).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port and data directory.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        self.launch().await
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
