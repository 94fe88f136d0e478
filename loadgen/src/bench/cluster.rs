//! Which PostgreSQL server the bench measures: the one at `--pg-url` as it is configured
//! (`default`), or a private cluster it `initdb`s with production-like settings (`tuned`),
//! so that figures at millions of stored events are not dominated by a 128 MB buffer pool
//! and checkpoints forced by WAL volume. The private cluster lives under the system temp
//! directory (`TMPDIR` moves it: a 20M-event preload needs tens of GB) and is stopped and
//! removed when dropped, also when the bench fails or is interrupted.

use anyhow::{Context, Result};
use clap::ValueEnum;
use serde::Serialize;

use super::cpu::PgProcesses;
use super::statements::PROFILE_SETTINGS;
use crate::servers::PrivatePostgres;

/// `--pg-cluster`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    /// The server at `--pg-url`, with its own settings.
    Default,
    /// A private cluster with [`TUNED_SETTINGS`], on a free port.
    Tuned,
    /// The whole bench twice: `default`, then `tuned`; one report each.
    Both,
}

impl ClusterMode {
    /// The modes a run measures, in order.
    pub fn runs(self) -> Vec<ClusterMode> {
        match self {
            ClusterMode::Both => vec![ClusterMode::Default, ClusterMode::Tuned],
            one => vec![one],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ClusterMode::Default => "default",
            ClusterMode::Tuned => "tuned",
            ClusterMode::Both => "both",
        }
    }
}

/// A value in `postgresql.conf`: fixed, or a share of the machine's RAM.
#[derive(Clone, Copy, Debug)]
pub enum Setting {
    Fixed(&'static str),
    /// Percent of `MemTotal`, in MB.
    RamPercent(u64),
}

/// The tuned cluster's settings, as a production server sized for this machine would have.
pub const TUNED_SETTINGS: [(&str, Setting); 11] = [
    // The usual quarter of RAM: the event log's indexes of a large database stay cached,
    // so backends do not evict dirty pages themselves (128 MB by default).
    ("shared_buffers", Setting::RamPercent(25)),
    // What the OS page cache adds; only steers the planner towards index scans.
    ("effective_cache_size", Setting::RamPercent(50)),
    // Checkpoints by time, not forced by WAL volume every 1 GB: fewer full-page images.
    ("max_wal_size", Setting::Fixed("16GB")),
    // Recycle WAL segments instead of creating new ones after each checkpoint.
    ("min_wal_size", Setting::Fixed("2GB")),
    // Production-like checkpoint spacing (5 min by default).
    ("checkpoint_timeout", Setting::Fixed("30min")),
    // Spread each checkpoint's writes over most of the interval (the default since PG 14).
    ("checkpoint_completion_target", Setting::Fixed("0.9")),
    // Full-page images compressed with lz4 (PostgreSQL 15+), as a PostgreSQL 15 server would
    // be set up: `on` means pglz, whose compression cost the backends a third of their CPU
    // per event at 20M stored events (bench-results/stop19-wal: 38k events/s with pglz, 50k
    // with lz4, 51k with none; lz4 writes 14 % less WAL than none).
    ("wal_compression", Setting::Fixed("lz4")),
    // Index builds and VACUUM of the preload (INSERT … SELECT from the reference views).
    ("maintenance_work_mem", Setting::Fixed("1GB")),
    // Sorts and hashes of the reference views and the engine's set-based statements in memory.
    ("work_mem", Setting::Fixed("64MB")),
    // Durability as in production: a commit waits for its WAL flush …
    ("synchronous_commit", Setting::Fixed("on")),
    // … and the WAL really is flushed to disk.
    ("fsync", Setting::Fixed("on")),
];

/// [`TUNED_SETTINGS`] with RAM shares resolved for a machine of `mem_total_kib`.
pub fn tuned_settings(mem_total_kib: u64) -> Vec<(String, String)> {
    TUNED_SETTINGS
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Setting::Fixed(v) => (*v).to_owned(),
                Setting::RamPercent(p) => format!("{}MB", mem_total_kib * p / 100 / 1024),
            };
            ((*name).to_owned(), value)
        })
        .collect()
}

/// `MemTotal` of `/proc/meminfo`, KiB (0 when unknown).
pub fn mem_total_kib() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What the report says about the server measured.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterInfo {
    pub mode: ClusterMode,
    /// `postgresql.conf` settings the bench chose (empty in `default` mode: the server's own).
    pub settings: Vec<(String, String)>,
    /// Whose CPU time the PostgreSQL figures count.
    pub postgres_cpu: String,
}

/// The server of one bench run; a private one is removed when this is dropped.
pub struct Cluster {
    /// PostgreSQL URL without a database name.
    pub base_url: String,
    pub processes: PgProcesses,
    pub info: ClusterInfo,
    /// Held for its `Drop`: stops the server and removes its directory.
    _private: Option<PrivatePostgres>,
}

impl Cluster {
    /// The server at `pg_url`, as configured.
    pub fn default_server(pg_url: &str) -> Cluster {
        Cluster {
            base_url: pg_url.to_owned(),
            processes: PgProcesses::All,
            info: ClusterInfo {
                mode: ClusterMode::Default,
                settings: Vec::new(),
                postgres_cpu: "every `postgres` process on this machine (the server at --pg-url, assumed to be \
                               the only one busy)"
                    .to_owned(),
            },
            _private: None,
        }
    }

    /// `initdb` and start a private cluster with [`TUNED_SETTINGS`], and what a statement
    /// profile needs if asked.
    pub async fn tuned(statement_profile: bool) -> Result<Cluster> {
        let mut settings = tuned_settings(mem_total_kib());
        if statement_profile {
            settings.extend(PROFILE_SETTINGS.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        }
        let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let pg = PrivatePostgres::start("bench", &pairs).await.context("starting the tuned private cluster")?;
        let pid_file = pg.data_dir().join("postmaster.pid");
        let postmaster: u32 = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("reading {}", pid_file.display()))?
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("no pid on the first line of {}", pid_file.display()))?;
        let postgres_cpu = format!(
            "the private cluster's process tree only (postmaster pid {postmaster}, data directory {})",
            pg.data_dir().display()
        );
        Ok(Cluster {
            base_url: pg.base_url(),
            processes: PgProcesses::Tree(postmaster),
            info: ClusterInfo { mode: ClusterMode::Tuned, settings, postgres_cpu },
            _private: Some(pg),
        })
    }

    pub async fn start(mode: ClusterMode, pg_url: &str, statement_profile: bool) -> Result<Cluster> {
        match mode {
            ClusterMode::Tuned => Cluster::tuned(statement_profile).await,
            _ => Ok(Cluster::default_server(pg_url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_shares_are_whole_megabytes() {
        let s = tuned_settings(24 * 1024 * 1024);
        let get = |k: &str| s.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("shared_buffers"), Some("6144MB"));
        assert_eq!(get("effective_cache_size"), Some("12288MB"));
        assert_eq!(get("max_wal_size"), Some("16GB"));
        assert_eq!(get("fsync"), Some("on"));
        assert_eq!(get("wal_compression"), Some("lz4"));
        assert_eq!(s.len(), TUNED_SETTINGS.len());
    }

    #[test]
    fn both_runs_default_then_tuned() {
        assert_eq!(ClusterMode::Both.runs(), [ClusterMode::Default, ClusterMode::Tuned]);
        assert_eq!(ClusterMode::Tuned.runs(), [ClusterMode::Tuned]);
    }
}
