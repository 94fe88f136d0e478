//! The machine and servers a report was measured on: CPU, memory, PostgreSQL version and
//! the settings that move the figures, Redis version, commit.

use anyhow::Result;
use serde::Serialize;

use super::BenchConfig;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub postgres: String,
    /// Server settings that move the figures most, as the server reports them.
    pub postgres_settings: String,
    pub redis: String,
    /// The commit this binary was built from (`+dirty`: with uncommitted changes), see build.rs.
    pub git_commit: String,
    pub started_at: String,
}

pub(super) async fn machine(config: &BenchConfig, pg_base: &str) -> Result<Machine> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let pg = crate::admin::connect(pg_base).await?;
    let postgres: String = pg.query_one("SHOW server_version", &[]).await?.get(0);
    let postgres_settings: String = pg
        .query_one(
            "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name) FROM pg_settings \
             WHERE name IN ('shared_buffers', 'effective_cache_size', 'max_wal_size', 'min_wal_size', \
                            'checkpoint_timeout', 'checkpoint_completion_target', 'wal_compression', \
                            'maintenance_work_mem', 'work_mem', 'synchronous_commit', 'fsync')",
            &[],
        )
        .await?
        .get(0);
    let mut redis = crate::redis_out::connect(&config.redis_url).await?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut redis).await?;
    let redis_version = info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").trim().to_owned();
    Ok(Machine {
        cpu,
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        memory_gib: kib / 1024.0 / 1024.0,
        postgres: format!("PostgreSQL {}", postgres.split_whitespace().next().unwrap_or(&postgres)),
        postgres_settings,
        redis: redis_version,
        git_commit: env!("RPS_BUILD_COMMIT").to_owned(),
        started_at: super::chrono_stamp(),
    })
}
