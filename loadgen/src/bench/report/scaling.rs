//! The scaling sections of the report: the engine, the analytics worker and PostgreSQL's
//! statements on top of existing data.

use std::fmt::Write as _;

use super::{yes, Report};
use crate::bench::cpu::CpuSeconds;
use crate::bench::grow::GrowthSlice;
use crate::bench::variants::{self, VariantRun};

/// Rows of the growth table per size: slices are summed in groups to fit.
const GROWTH_ROWS: usize = 20;

impl Report {
    pub(super) fn scaling_table(&self, md: &mut String) {
        if self.scaling.is_empty() {
            return;
        }
        let _ = writeln!(md, "## Scaling: the same batches on top of existing data\n");
        let _ = writeln!(md, "| events already stored | engine events/s | vs empty | mean batch ms | engine / PostgreSQL µs CPU per event | WAL bytes per event | event log MiB (heap + keys) | state MiB | full refresh of all reference views s | refresh / batch | tables = reference views |");
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        let base = self.scaling.first().map(|s| s.engine.events_per_sec).unwrap_or(0.0);
        for s in &self.scaling {
            let cpu = micros_per(s.cpu, s.engine.events, 1);
            let z = &s.sizes;
            let (refresh, per_batch) = match s.snapshot_refresh_total_seconds {
                Some(r) => (format!("{r:.2}"), format!("{:.0}×", r * 1000.0 / s.engine.mean_batch_ms.max(1e-9))),
                None => ("not measured (above --refresh-scale-up-to)".to_owned(), "–".to_owned()),
            };
            let matches =
                if s.verified { yes(s.engine.matches_reference) } else { "not checked (above --verify-scale-up-to)" };
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:+.0} % | {:.0} | {cpu} | {:.0} | {:.0} + {:.0} | {:.0} | {refresh} | {per_batch} | {matches} |",
                s.preloaded_events,
                s.engine.events_per_sec,
                (s.engine.events_per_sec / base.max(1e-9) - 1.0) * 100.0,
                s.engine.mean_batch_ms,
                s.wal_bytes_per_event,
                z.event_tables_mib,
                z.event_indexes_mib,
                z.state_mib,
            );
        }
        let _ = writeln!(md, "\nThe refresh column is the seed's \"before\" design: one full recompute of every view, which it needed after any change.\n");
        for s in self.scaling.iter().filter(|s| s.preloaded_events > 0) {
            let p = &s.preload;
            let _ = if p.through_engine {
                writeln!(
                    md,
                    "- preload of {} events through the engine: {:.1} s in {} slices (the engine's runs {:.1} s, generating the slices {:.1} s, level-3 tables from the reference views + VACUUM ANALYZE {:.1} s; the rest XADD)",
                    s.preloaded_events, p.seconds, p.slices, p.engine_seconds, p.generate_wait_seconds, p.derive_seconds
                )
            } else {
                writeln!(
                    md,
                    "- preload of {} events: {:.1} s in {} slices (COPY {:.1} s, waiting for the generator {:.1} s, derived tables from the reference views + VACUUM ANALYZE {:.1} s)",
                    s.preloaded_events, p.seconds, p.slices, p.copy_seconds, p.generate_wait_seconds, p.derive_seconds
                )
            };
        }
        let checkpoints: Vec<String> = self
            .scaling
            .iter()
            .map(|s| match s.checkpoint_seconds {
                Some(c) => format!("{} events: {c:.1} s", s.preloaded_events),
                None => format!("{} events: refused (measured without it)", s.preloaded_events),
            })
            .collect();
        let _ = writeln!(
            md,
            "- every size is measured right after a CHECKPOINT, so that the server is not still writing the preload out (a backfill that reached that size spread those writes over hours): {}\n",
            checkpoints.join(", ")
        );
    }

    /// The preloads through the engine, slice by slice, in at most [`GROWTH_ROWS`] rows per
    /// size: the backfill's throughput as the database grows.
    pub(super) fn growth_table(&self, md: &mut String) {
        let Some(largest) = self.scaling.iter().filter(|s| !s.growth.is_empty()).max_by_key(|s| s.preloaded_events)
        else {
            return;
        };
        let _ = writeln!(
            md,
            "## The backfill as the database grows (the preload of {} events, through the engine)\n",
            largest.preloaded_events
        );
        let _ = writeln!(md, "| events stored before | events | engine events/s | vs the first rows | engine / PostgreSQL µs CPU per event | WAL bytes per event |");
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|");
        let per_row = largest.growth.len().div_ceil(GROWTH_ROWS);
        let mut first = None;
        for rows in largest.growth.chunks(per_row) {
            let events: u64 = rows.iter().map(|r| r.events).sum();
            let rate = events as f64 / rows.iter().map(|r| r.engine_seconds).sum::<f64>().max(1e-9);
            let first = *first.get_or_insert(rate);
            let micros =
                |cpu: Option<f64>| cpu.map_or("–".to_owned(), |c| format!("{:.1}", c * 1e6 / events.max(1) as f64));
            let sum = |f: &dyn Fn(&GrowthSlice) -> Option<f64>| rows.iter().map(f).sum::<Option<f64>>();
            let _ = writeln!(
                md,
                "| {} | {events} | {rate:.0} | {:+.0} % | {} / {} | {:.0} |",
                rows[0].stored_before,
                (rate / first - 1.0) * 100.0,
                micros(sum(&|r| r.engine_cpu_seconds)),
                micros(sum(&|r| r.postgres_cpu_seconds)),
                rows.iter().map(|r| r.wal_bytes).sum::<f64>() / events.max(1) as f64,
            );
        }
        let _ = writeln!(md, "\nEach slice is XADDed, then drained by the engine in backfill mode (its start to its exit), then trimmed from the streams; no CHECKPOINT between slices, so checkpoints fall where a long backfill meets them. Each slice's deposits and redeems touch its own new terms. The scaling table's batches at this size ran on the database this preload left.\n");
    }

    pub(super) fn variants_table(&self, md: &mut String) {
        if self.scaling.iter().all(|s| s.variants.is_empty()) {
            return;
        }
        let _ = writeln!(
            md,
            "## SQL variants at scale: the measured batches on copies of each preloaded database
"
        );
        let _ = writeln!(md, "| events already stored | variant | runs, events/s | median events/s | vs current | cascade / merge wall s (median) | PostgreSQL µs CPU per event (median) | WAL bytes per event (median) |");
        let _ = writeln!(md, "|---:|---|---|---:|---:|---|---:|---:|");
        for s in self.scaling.iter().filter(|s| !s.variants.is_empty()) {
            let mut names: Vec<&str> = Vec::new();
            for r in &s.variants {
                if !names.contains(&r.variant.as_str()) {
                    names.push(&r.variant);
                }
            }
            let median_of = |name: &str, f: &dyn Fn(&VariantRun) -> Option<f64>| {
                median(s.variants.iter().filter(|r| r.variant == name).filter_map(f).collect())
            };
            let current = median_of(variants::CURRENT, &|r| Some(r.events_per_sec));
            for name in names {
                let runs: Vec<String> = s
                    .variants
                    .iter()
                    .filter(|r| r.variant == name)
                    .map(|r| format!("{:.0}", r.events_per_sec))
                    .collect();
                let eps = median_of(name, &|r| Some(r.events_per_sec));
                let fmt = |v: Option<f64>, d: usize| v.map_or("–".to_owned(), |v| format!("{v:.d$}"));
                let _ = writeln!(
                    md,
                    "| {} | {name} | {} | {} | {} | {} / {} | {} | {} |",
                    s.preloaded_events,
                    runs.join(", "),
                    fmt(eps, 0),
                    match (eps, current) {
                        (Some(e), Some(c)) => format!("{:+.1} %", (e / c.max(1e-9) - 1.0) * 100.0),
                        _ => "–".to_owned(),
                    },
                    fmt(median_of(name, &|r| Some(r.cascade_wall_seconds)), 2),
                    fmt(median_of(name, &|r| Some(r.merge_wall_seconds)), 2),
                    fmt(median_of(name, &|r| r.postgres_us_per_event), 1),
                    fmt(median_of(name, &|r| Some(r.wal_bytes_per_event)), 0),
                );
            }
        }
        let _ = writeln!(md, "\nEach run starts from a fresh copy (`CREATE DATABASE ... STRATEGY FILE_COPY`) right after a CHECKPOINT; the order of the variants reverses every other round. `current` is the migrations as they are.\n");
    }

    pub(super) fn analytics_scaling_table(&self, md: &mut String) {
        if self.scaling.is_empty() {
            return;
        }
        let _ = writeln!(md, "## Scaling: the analytics worker on top of existing data\n");
        let _ = writeln!(md, "| events already stored | largest (predicate, object) / (subject, predicate) pair, triples | term ids drained | triples refreshed | drain s | term ids/s | worker / PostgreSQL µs CPU per term id | level 3 = reference views |");
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---|");
        for s in &self.scaling {
            let a = &s.analytics;
            let cpu = micros_per(a.cpu, a.term_ids, 0);
            let _ = writeln!(
                md,
                "| {} | {} / {} | {} | {} | {:.2} | {:.0} | {cpu} | {} |",
                s.preloaded_events,
                a.largest_pairs[0],
                a.largest_pairs[1],
                a.term_ids,
                a.triples,
                a.seconds,
                a.term_ids_per_sec,
                a.matches_reference.map_or("not checked (above --verify-scale-up-to)", yes),
            );
        }
        let _ = writeln!(md, "\nThe worker starts after the engine has published every term update of the measured batches, so the drain time is also its lag behind the engine at the end of the run.\n");
    }

    pub(super) fn statement_tables(&self, md: &mut String) {
        for s in &self.scaling {
            let Some(statements) = &s.statements else { continue };
            let engine_ms = s.engine.seconds * 1000.0;
            let _ = writeln!(
                md,
                "## PostgreSQL's top statements, {} events on top of {}\n",
                s.engine.events, s.preloaded_events
            );
            let _ = writeln!(
                md,
                "| statement | nested | calls | total ms | % of the engine run | rows | blocks read / hit | WAL MiB |"
            );
            let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|");
            for st in statements {
                let _ = writeln!(
                    md,
                    "| `{}` | {} | {} | {:.0} | {:.0} % | {} | {} / {} | {:.1} |",
                    st.query.replace('|', "\\|"),
                    if st.nested { "yes" } else { "no" },
                    st.calls,
                    st.total_ms,
                    st.total_ms / engine_ms.max(1e-9) * 100.0,
                    st.rows,
                    st.blocks_read,
                    st.blocks_hit,
                    st.wal_bytes / 1048576.0,
                );
            }
            let _ = writeln!(md, "\nA nested statement (run by a trigger or function) is also inside its caller's time; statements of the apply parts overlap in time, so shares may pass 100 %.\n");
        }
    }
}

/// "6.9 / 22.0": this process's and PostgreSQL's CPU in µs per unit (event, term id), with
/// `decimals` decimals; "–" where a counter could not be read.
fn micros_per(cpu: Option<CpuSeconds>, units: u64, decimals: usize) -> String {
    let per = |core_s: Option<f64>| match core_s {
        Some(c) => format!("{:.*}", decimals, c * 1e6 / units.max(1) as f64),
        None => "–".into(),
    };
    match cpu {
        Some(c) => format!("{} / {}", per(Some(c.this_process)), per(c.postgres)),
        None => "– / –".to_owned(),
    }
}

/// The median of some values (the mean of the middle two for an even count); `None` if empty.
fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
