//! CPU time each party spends in one measurement: this process (the engine runs in it, or
//! the floor's COPY client), the local PostgreSQL server and Redis. Wall time on a shared
//! 2-core VM drifts; core-seconds show where the work is, and what the floor does with the
//! same events.
//!
//! PostgreSQL is read from `/proc`: every `postgres` process (or, with a private cluster,
//! its postmaster's process tree only), plus the time the postmaster collected from backends
//! that exited during the measurement (a closed pool's). So it is known only with the server
//! on this machine, under Linux; it then includes the server's background work (WAL writer,
//! checkpointer, autovacuum) caused by the measurement.

use std::collections::HashMap;
use std::fs;

use redis::aio::MultiplexedConnection;
use serde::Serialize;

/// `/proc` counts CPU time in ticks of USER_HZ, 100 per second on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

/// Which processes are the PostgreSQL server measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgProcesses {
    /// Every `postgres` process on the machine (the server at `--pg-url`, when local).
    All,
    /// The process tree of this postmaster (a private cluster), other servers left out.
    Tree(u32),
}

/// Core-seconds spent during one measurement.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CpuSeconds {
    /// This process: the engine's threads, or the floor's COPY client.
    pub this_process: f64,
    /// The part of `this_process` spent in the kernel (system time): socket I/O, and the
    /// zeroing of freshly touched memory, which is mostly a one-off of a run's first batches.
    pub this_process_system: f64,
    pub postgres: Option<f64>,
    pub redis: Option<f64>,
}

/// CPU counters at the start of a measurement.
pub struct CpuMark {
    processes: PgProcesses,
    this_process: Option<(f64, f64)>,
    postgres: Option<f64>,
    redis: Option<f64>,
}

impl CpuMark {
    pub async fn now(redis: &mut MultiplexedConnection, processes: PgProcesses) -> CpuMark {
        CpuMark {
            processes,
            this_process: this_process(),
            postgres: postgres(processes),
            redis: redis_cpu(redis).await,
        }
    }

    /// What was spent since `self`; `None` where a counter cannot be read.
    pub async fn since(&self, redis: &mut MultiplexedConnection) -> Option<CpuSeconds> {
        let delta = |before: Option<f64>, after: Option<f64>| Some(after? - before?);
        let ((user0, system0), (user1, system1)) = (self.this_process?, this_process()?);
        Some(CpuSeconds {
            this_process: (user1 + system1) - (user0 + system0),
            this_process_system: system1 - system0,
            postgres: delta(self.postgres, postgres(self.processes)),
            redis: delta(self.redis, redis_cpu(redis).await),
        })
    }
}

/// One `/proc/<pid>/stat` line: the command name, and the numeric fields after it (the
/// state letter and any other non-number read as 0), in order from the state.
fn stat_fields(pid: &str) -> Option<(String, Vec<u64>)> {
    let line = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (line.find('(')?, line.rfind(')')?);
    let comm = line[open + 1..close].to_owned();
    Some((comm, line.get(close + 2..)?.split(' ').map(|f| f.trim().parse().unwrap_or(0)).collect()))
}

/// (comm, ppid, own ticks, ticks of waited-for children).
fn stat(pid: &str) -> Option<(String, u32, u64, u64)> {
    let (comm, f) = stat_fields(pid)?;
    let num = |i: usize| f.get(i).copied();
    Some((comm, num(1)? as u32, num(11)? + num(12)?, num(13)? + num(14)?))
}

/// This process's (user, system) seconds.
fn this_process() -> Option<(f64, f64)> {
    let (_, f) = stat_fields("self")?;
    Some((*f.get(11)? as f64 / TICKS_PER_SECOND, *f.get(12)? as f64 / TICKS_PER_SECOND))
}

/// Every live `postgres` process's time (of `processes`), plus the postmaster's collected
/// children's.
fn postgres(processes: PgProcesses) -> Option<f64> {
    let procs: HashMap<u32, (String, u32, u64, u64)> = fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let pid = name.parse::<u32>().ok()?;
            Some((pid, stat(&name)?))
        })
        .collect();
    let ticks = match processes {
        PgProcesses::All => all_postgres_ticks(&procs)?,
        PgProcesses::Tree(root) => tree_ticks(&procs, root)?,
    };
    Some(ticks as f64 / TICKS_PER_SECOND)
}

type Procs = HashMap<u32, (String, u32, u64, u64)>;

fn all_postgres_ticks(procs: &Procs) -> Option<u64> {
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
    found.then_some(ticks)
}

/// `root`'s own and collected children's time, plus every live descendant's own time.
fn tree_ticks(procs: &Procs, root: u32) -> Option<u64> {
    let (_, _, own, children) = procs.get(&root)?;
    let mut ticks = own + children;
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for (pid, (_, ppid, own, _)) in procs {
            if *ppid == parent && *pid != root {
                ticks += own;
                parents.push(*pid);
            }
        }
    }
    Some(ticks)
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
        let (user, system) = this_process().expect("/proc/self/stat");
        let before = user + system;
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let (user, system) = this_process().unwrap();
        let spent = user + system - before;
        assert!(spent > 0.1, "300 ms of busy work counted as {spent} s");
    }

    /// Time in system calls is counted as the kernel's part, not the process's own code.
    #[test]
    fn kernel_work_counts_as_system_time() {
        let (user0, system0) = this_process().expect("/proc/self/stat");
        let started = std::time::Instant::now();
        let (mut user, mut system) = (0.0, 0.0);
        while system < 0.1 && started.elapsed() < std::time::Duration::from_secs(5) {
            for _ in 0..1000 {
                // Each read makes the kernel format the file: time spent there, not here.
                std::hint::black_box(fs::read("/proc/self/stat").unwrap());
            }
            let (u, s) = this_process().unwrap();
            (user, system) = (u - user0, s - system0);
        }
        // (Not compared with the user time: the other tests run on this process's threads.)
        assert!(system >= 0.1, "system calls counted as {system} s system, {user} s user");
    }

    /// A tree counts its root's collected children and every descendant, nothing else.
    #[test]
    fn a_tree_counts_only_its_descendants() {
        let procs: Procs = [
            (10, ("postgres".to_owned(), 1, 5, 100)),
            (11, ("postgres".to_owned(), 10, 7, 0)),
            (12, ("postgres".to_owned(), 11, 3, 50)),
            (20, ("postgres".to_owned(), 1, 1000, 1000)),
            (21, ("postgres".to_owned(), 20, 1000, 0)),
        ]
        .into_iter()
        .collect();
        assert_eq!(tree_ticks(&procs, 10), Some(5 + 100 + 7 + 3));
        assert_eq!(tree_ticks(&procs, 99), None);
        assert_eq!(all_postgres_ticks(&procs), Some(5 + 100 + 7 + 3 + 1000 + 1000 + 1000));
    }
}
