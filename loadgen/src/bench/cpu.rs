//! CPU time each party spends in one measurement: this process (the engine runs in it, or
//! the floor's COPY client), the local PostgreSQL server and Redis. Wall time on a shared
//! 2-core VM drifts; core-seconds show where the work is, and what the floor does with the
//! same events.
//!
//! PostgreSQL is read from `/proc`: every `postgres` process, plus the time the postmaster
//! collected from backends that exited during the measurement (a closed pool's). So it is
//! known only with the server on this machine, under Linux; it then includes the server's
//! background work (WAL writer, checkpointer, autovacuum) caused by the measurement.

use std::collections::HashMap;
use std::fs;

use redis::aio::MultiplexedConnection;
use serde::Serialize;

/// `/proc` counts CPU time in ticks of USER_HZ, 100 per second on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

/// Core-seconds spent during one measurement.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CpuSeconds {
    /// This process: the engine's threads, or the floor's COPY client.
    pub this_process: f64,
    pub postgres: Option<f64>,
    pub redis: Option<f64>,
}

/// CPU counters at the start of a measurement.
pub struct CpuMark {
    this_process: Option<f64>,
    postgres: Option<f64>,
    redis: Option<f64>,
}

impl CpuMark {
    pub async fn now(redis: &mut MultiplexedConnection) -> CpuMark {
        CpuMark { this_process: this_process(), postgres: postgres(), redis: redis_cpu(redis).await }
    }

    /// What was spent since `self`; `None` where a counter cannot be read.
    pub async fn since(&self, redis: &mut MultiplexedConnection) -> Option<CpuSeconds> {
        let delta = |before: Option<f64>, after: Option<f64>| Some(after? - before?);
        Some(CpuSeconds {
            this_process: delta(self.this_process, this_process())?,
            postgres: delta(self.postgres, postgres()),
            redis: delta(self.redis, redis_cpu(redis).await),
        })
    }
}

/// One `/proc/<pid>/stat` line's fields after the command name: (comm, ppid, own ticks,
/// ticks of waited-for children).
fn stat(pid: &str) -> Option<(String, u32, u64, u64)> {
    let line = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (line.find('(')?, line.rfind(')')?);
    let comm = line[open + 1..close].to_owned();
    let f: Vec<&str> = line[close + 2..].split(' ').collect();
    let num = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some((comm, num(1)? as u32, num(11)? + num(12)?, num(13)? + num(14)?))
}

fn this_process() -> Option<f64> {
    let (_, _, own, _) = stat("self")?;
    Some(own as f64 / TICKS_PER_SECOND)
}

/// Every live `postgres` process's time, plus the postmaster's collected children's.
fn postgres() -> Option<f64> {
    let procs: HashMap<u32, (String, u32, u64, u64)> = fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let pid = name.parse::<u32>().ok()?;
            Some((pid, stat(&name)?))
        })
        .collect();
    let mut ticks = 0;
    let mut found = false;
    for (comm, ppid, own, children) in procs.values() {
        if comm != "postgres" {
            continue;
        }
        found = true;
        ticks += own;
        let parent_is_postgres = procs.get(ppid).is_some_and(|p| p.0 == "postgres");
        if !parent_is_postgres {
            ticks += children; // the postmaster: backends that exited
        }
    }
    found.then(|| ticks as f64 / TICKS_PER_SECOND)
}

/// Redis's own CPU time (`INFO cpu`: used_cpu_sys + used_cpu_user).
async fn redis_cpu(redis: &mut MultiplexedConnection) -> Option<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(redis).await.ok()?;
    let field =
        |name: &str| info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse::<f64>().ok());
    Some(field("used_cpu_sys")? + field("used_cpu_user")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's counter moves with the work it does.
    #[test]
    fn this_process_counts_its_own_work() {
        let before = this_process().expect("/proc/self/stat");
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let spent = this_process().unwrap() - before;
        assert!(spent > 0.1, "300 ms of busy work counted as {spent} s");
    }
}
