//! The bench report: every figure of one run, the machine it ran on, as JSON and markdown.

mod scaling;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::cluster::{Cluster, ClusterInfo, ClusterMode};
use super::live::Live;
use super::machine::{machine, Machine};
use super::measure::{Backfill, RawFloor, Throughput};
use super::scaling::Scale;
use super::BenchConfig;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    /// The PostgreSQL server measured: mode, settings chosen, whose CPU is counted.
    pub cluster: ClusterInfo,
    pub command: String,
    /// How the workloads' messages are spelled and cut.
    pub encoding: crate::workload::Encoding,
    pub backfill: Option<Backfill>,
    pub raw_floor: Option<RawFloor>,
    pub per_event: Option<Throughput>,
    pub live: Vec<Live>,
    pub scaling: Vec<Scale>,
    pub total_seconds: f64,
    #[serde(skip)]
    pub written: Vec<PathBuf>,
}

impl Report {
    /// A report on the server at `--pg-url` (`--pg-cluster default`).
    pub async fn new(config: &BenchConfig) -> Result<Report> {
        Report::for_cluster(config, &Cluster::default_server(&config.pg_url)).await
    }

    pub(super) async fn for_cluster(config: &BenchConfig, cluster: &Cluster) -> Result<Report> {
        Ok(Report {
            machine: machine(config, &cluster.base_url).await?,
            cluster: cluster.info.clone(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            encoding: config.encoding,
            backfill: None,
            raw_floor: None,
            per_event: None,
            live: Vec::new(),
            scaling: Vec::new(),
            total_seconds: 0.0,
            written: Vec::new(),
        })
    }

    /// Engine backfill throughput as a share of the raw-ingest floor.
    pub fn floor_ratio(&self) -> Option<f64> {
        Some(self.backfill.as_ref()?.engine.events_per_sec / self.raw_floor.as_ref()?.events_per_sec)
    }

    /// How many times faster the default batch size is than batch size 1.
    pub fn batching_factor(&self) -> Option<f64> {
        Some(self.backfill.as_ref()?.engine.events_per_sec / self.per_event.as_ref()?.events_per_sec)
    }

    /// Write `bench-<time>.json`/`.md` and `latest.json`/`.md` under `dir`; on the tuned
    /// cluster `bench-<time>-tuned.*` and `latest-tuned.*`.
    pub fn write(&mut self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let stamp = self.machine.started_at.replace([':', '-'], "");
        let suffix = if self.cluster.mode == ClusterMode::Default { "" } else { "-tuned" };
        let json = serde_json::to_string_pretty(self)?;
        let md = self.markdown();
        for name in [format!("bench-{stamp}{suffix}"), format!("latest{suffix}")] {
            for (ext, body) in [("json", &json), ("md", &md)] {
                let path = dir.join(format!("{name}.{ext}"));
                std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
                self.written.push(path);
            }
        }
        Ok(())
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(md, "# redis-postgres-sync benchmark — PostgreSQL cluster: {}\n", self.cluster.mode.name());
        let _ = writeln!(
            md,
            "{} · {} cores · {:.0} GiB · {} · Redis {} · commit {} · {}  \n`{}`\n",
            m.cpu, m.cores, m.memory_gib, m.postgres, m.redis, m.git_commit, m.started_at, self.command
        );
        self.cluster_section(&mut md);
        let _ = writeln!(md, "PostgreSQL, Redis, the engine and the load generator share the machine.\n");
        self.throughput_table(&mut md);
        self.live_table(&mut md);
        self.scaling_table(&mut md);
        self.growth_table(&mut md);
        self.variants_table(&mut md);
        self.analytics_scaling_table(&mut md);
        self.statement_tables(&mut md);
        self.stage_table(&mut md);
        let _ = writeln!(md, "\nTotal bench time {:.0} s.", self.total_seconds);
        md
    }

    fn cluster_section(&self, md: &mut String) {
        let c = &self.cluster;
        match c.mode {
            ClusterMode::Default => {
                let _ = writeln!(md, "Cluster mode **default**: the server at `--pg-url`, with its own settings.  ");
            }
            _ => {
                let chosen: Vec<String> = c.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = writeln!(
                    md,
                    "Cluster mode **{}**: a private cluster initdb'd for this run (removed afterwards), with `{}`.  ",
                    c.mode.name(),
                    chosen.join(" ")
                );
            }
        }
        let _ = writeln!(md, "PostgreSQL settings as the server reports them: `{}`  ", self.machine.postgres_settings);
        let _ = writeln!(md, "PostgreSQL CPU time counts {}.  ", c.postgres_cpu);
    }

    fn throughput_table(&self, md: &mut String) {
        let _ = writeln!(md, "## Backfill throughput\n");
        let shape = match self.encoding {
            crate::workload::Encoding::Rindexer => {
                "rindexer's encoding: one message per (event, block), at most 50 events"
            }
            crate::workload::Encoding::Mixed => "mixed encodings: messages of 50 events spanning blocks",
        };
        let _ = writeln!(md, "Workload messages: {shape}.\n");
        let _ = writeln!(md, "| run | events | batches | seconds | events/s | tables = reference views |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---|");
        if let Some(b) = &self.backfill {
            row(md, "engine, default batch size (levels 1-2 + outbox in the batch transaction)", &b.engine);
        }
        if let Some(p) = &self.per_event {
            row(md, "engine, batch size 1 (one event per transaction: the per-event path)", p);
        }
        if let Some(f) = &self.raw_floor {
            let _ = writeln!(
                md,
                "| raw-ingest floor: binary COPY into the event tables only ({} events/transaction) | {} | | {:.2} | **{:.0}** | n/a |",
                f.events_per_transaction, f.events, f.seconds, f.events_per_sec
            );
        }
        let _ = writeln!(md);
        if let (Some(b), Some(f)) = (&self.backfill, &self.raw_floor) {
            if b.runs_events_per_sec.len() > 1 {
                let _ = writeln!(
                    md,
                    "- engine and floor measured {} times, alternately; the rows above are the median runs. Every run, in order: engine {}; floor {}",
                    b.runs_events_per_sec.len(),
                    rates(&b.runs_events_per_sec),
                    rates(&f.runs_events_per_sec)
                );
            }
        }
        if let Some(r) = self.floor_ratio() {
            let _ = writeln!(md, "- engine / raw-ingest floor: **{:.0} %**", r * 100.0);
        }
        if let (Some(e), Some(f)) =
            (self.backfill.as_ref().and_then(|b| b.cpu), self.raw_floor.as_ref().and_then(|f| f.cpu))
        {
            let _ = writeln!(
                md,
                "- CPU, core-seconds (median runs): engine run — engine {:.2} (of it in the kernel {:.2}), \
                 PostgreSQL {}, Redis {}; floor — COPY client {:.2}, PostgreSQL {}",
                e.this_process,
                e.this_process_system,
                core_seconds(e.postgres),
                core_seconds(e.redis),
                f.this_process,
                core_seconds(f.postgres)
            );
        }
        if let (Some(b), Some(f)) = (&self.backfill, &self.raw_floor) {
            let _ = writeln!(
                md,
                "- WAL written per event (server-wide, median runs): engine {:.0} bytes, floor {:.0} bytes",
                b.wal_bytes_per_event, f.wal_bytes_per_event
            );
        }
        if let Some(f) = self.batching_factor() {
            let _ = writeln!(md, "- default batch size vs batch size 1: **{f:.0}×**");
        }
        if let Some(f) = &self.raw_floor {
            let _ = writeln!(md, "- decode alone (simd-json, one thread): {:.0} events/s", f.decode_events_per_sec);
        }
        if let Some(a) = self.backfill.as_ref().and_then(|b| b.analytics.as_ref()) {
            let _ = writeln!(
                md,
                "- analytics worker draining the backfill's term_updates: {} term ids ({} triples) in {:.2} s, {:.0} term ids/s, tables = reference views: {}",
                a.term_ids, a.triples, a.seconds, a.term_ids_per_sec, a.matches_reference.map_or("not checked", yes)
            );
        }
        if let Some(b) = &self.backfill {
            let _ = writeln!(md, "- XADD of the workload by loadgen: {:.0} events/s", b.xadd_events_per_sec);
        }
        let _ = writeln!(md);
    }

    fn live_table(&self, md: &mut String) {
        if self.live.is_empty() {
            return;
        }
        let _ = writeln!(md, "## Live latency (XADD → commit, one event per message)\n");
        let _ = writeln!(md, "| offered events/s | achieved offered events/s | events | p50 ms | p90 ms | p99 ms | max ms | analytics lag p50 / p99 / max s | tables = reference views |");
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---|---|");
        for l in &self.live {
            let (t, a) = (&l.latency_ms, &l.analytics_lag_s);
            let _ = writeln!(
                md,
                "| {:.0} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} / {:.2} / {:.2} | {} |",
                l.offered_events_per_sec,
                achieved(l),
                l.events,
                t.p50,
                t.p90,
                t.p99,
                t.max,
                a.p50,
                a.p99,
                a.max,
                yes(l.matches_reference)
            );
        }
        let _ = writeln!(md);
        for l in self.live.iter().filter(|l| l.runs_p99_ms.len() > 1) {
            let p99s: Vec<String> = l.runs_p99_ms.iter().map(|p| format!("{p:.1}")).collect();
            let _ = writeln!(
                md,
                "- {:.0} events/s: {} runs, the row is the one with the median p99; p99 of every run, in order: {} ms",
                l.offered_events_per_sec,
                p99s.len(),
                p99s.join(" / ")
            );
        }
        let _ = writeln!(md, "\nLatency samples use the entry id's millisecond clock (up to 1 ms pessimistic); analytics lag is the age of the oldest unapplied term update, sampled every 50 ms. The achieved offered rate is the events over the time the paced writer took to XADD them; \"short\" marks a writer more than 3 % behind the target, whose latencies were measured under less load than offered.\n");
    }

    fn stage_table(&self, md: &mut String) {
        let Some(b) = &self.backfill else { return };
        let _ = writeln!(md, "## Where the backfill's time goes (seconds, summed over batches)\n");
        let wall = &b.engine.stage_wall_seconds;
        let stages: Vec<String> = b
            .engine
            .stage_seconds
            .iter()
            .map(|(k, v)| match wall.get(k) {
                Some(w) if w + 0.005 < *v => format!("{k} {v:.2} (wall {w:.2})"),
                _ => format!("{k} {v:.2}"),
            })
            .collect();
        let _ = writeln!(
            md,
            "{}  \n(read and decode run on the reader task, overlapping the database stages; {} of {} batches \
             were applied as concurrent term-disjoint parts, whose database stages are summed over the parts; \
             wall counts concurrent parts once, by the longest.)",
            stages.join(" · "),
            b.engine.parallel_batches,
            b.engine.batches
        );
    }
}

/// "6.12", or "n/a" where the counter could not be read (PostgreSQL on another machine).
fn core_seconds(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"))
}

/// "39.1k / 41.0k / 37.2k"
fn rates(runs: &[f64]) -> String {
    runs.iter().map(|r| format!("{:.1}k", r / 1000.0)).collect::<Vec<_>>().join(" / ")
}

fn row(md: &mut String, name: &str, t: &Throughput) {
    let _ = writeln!(
        md,
        "| {name} | {} | {} | {:.2} | **{:.0}** | {} |",
        t.events,
        t.batches,
        t.seconds,
        t.events_per_sec,
        yes(t.matches_reference)
    );
}

/// "10000", or "8123 (short)" when the writer fell more than 3 % behind the target.
fn achieved(l: &Live) -> String {
    let a = l.achieved_offered_events_per_sec;
    if a < l.offered_events_per_sec * 0.97 {
        format!("{a:.0} (short)")
    } else {
        format!("{a:.0}")
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO"
    }
}
