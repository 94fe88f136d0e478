//! Doctor: the seed's troubleshooting queries as one command. It only reads: it applies no
//! migration, creates no group and changes no setting, so it is safe against production.
//!
//! Each check yields findings at a [`Level`]; anything at [`Level::Fail`] (the engine
//! cannot be keeping the tables right: a missing or disabled trigger, pending or divergent
//! migrations, an unreachable dependency) makes the command exit 1. Warnings point at
//! conditions that need a look but can be transient (blocked sessions, dead letters, a
//! stuck outbox, readers on the reference views).

use std::fmt;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use redis::aio::MultiplexedConnection;
use tokio_postgres::Client;

use crate::config::EngineConfig;
use crate::progress::{self, GroupStatus};
use crate::source::dead_letter_stream;
use crate::stage::EVENT_TABLES;
use crate::verify::DERIVED_TABLES;

mod embedded {
    // The same files the engine applies, to tell which of them the database lacks.
    refinery::embed_migrations!("../migrations");
}

/// The statement-level triggers that keep level 1, the table each belongs on, and the
/// migration that last created it (where to find its `CREATE TRIGGER`).
pub const TRIGGERS: [(&str, &str, &str); 5] = [
    ("trigger_atom_created", "atom_created_events", "V3__merge_triggers.sql"),
    ("trigger_triple_created", "triple_created_events", "V3__merge_triggers.sql"),
    ("trigger_deposited", "deposited_events", "V9__per_batch_costs.sql"),
    ("trigger_redeemed", "redeemed_events", "V9__per_batch_costs.sql"),
    ("trigger_share_price_changed", "share_price_changed_events", "V3__merge_triggers.sql"),
];

/// Tables reported with their size and row count: the log, the derived tables, the outbox.
pub fn reported_tables() -> Vec<&'static str> {
    EVENT_TABLES.into_iter().chain(DERIVED_TABLES).chain(["term_update_outbox"]).collect()
}

#[derive(Args, Clone, Debug)]
pub struct DoctorArgs {
    /// The analytics-worker consumer group to report on `term_updates`.
    #[arg(long, env = "ANALYTICS_GROUP", default_value = "analytics-worker")]
    pub analytics_group: String,

    /// Count rows exactly (count(*), slow on large tables) instead of the statistics' estimate.
    #[arg(long)]
    pub exact_counts: bool,

    /// Warn when the oldest unpublished outbox row is older than this many seconds.
    #[arg(long, default_value_t = 60)]
    pub outbox_max_age_secs: u64,
}

impl Default for DoctorArgs {
    fn default() -> Self {
        DoctorArgs { analytics_group: "analytics-worker".into(), exact_counts: false, outbox_max_age_secs: 60 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// A fact (sizes, counts), no verdict.
    Info,
    Ok,
    Warn,
    Fail,
}

#[derive(Clone, Debug)]
pub struct Finding {
    pub section: &'static str,
    pub level: Level,
    pub text: String,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    fn push(&mut self, section: &'static str, level: Level, text: impl Into<String>) {
        self.findings.push(Finding { section, level, text: text.into() });
    }

    pub fn failures(&self) -> usize {
        self.findings.iter().filter(|f| f.level == Level::Fail).count()
    }

    pub fn warnings(&self) -> usize {
        self.findings.iter().filter(|f| f.level == Level::Warn).count()
    }

    pub fn healthy(&self) -> bool {
        self.failures() == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut section = "";
        for finding in &self.findings {
            if finding.section != section {
                section = finding.section;
                writeln!(f, "== {section}")?;
            }
            let tag = match finding.level {
                Level::Info => "",
                Level::Ok => "ok",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            writeln!(f, "  {tag:<5} {}", finding.text)?;
        }
        let (failures, warnings) = (self.failures(), self.warnings());
        write!(
            f,
            "doctor: {} problem{}, {} warning{}",
            failures,
            if failures == 1 { "" } else { "s" },
            warnings,
            if warnings == 1 { "" } else { "s" }
        )
    }
}

/// Run every check. Connection failures are findings, not errors, so one dead dependency
/// still leaves the other's checks on screen.
pub async fn run(engine: &EngineConfig, args: &DoctorArgs) -> Report {
    let mut report = Report::default();
    match crate::db::connect_one(&engine.database_url).await {
        Ok(client) => {
            report.push("postgres", Level::Ok, format!("connected to {}", crate::db::redact(&engine.database_url)));
            // Doctor is run when something is stuck, often behind a lock: it must report
            // that, not queue behind it.
            if let Err(e) = client.batch_execute(SESSION).await {
                report.push("postgres", Level::Warn, format!("cannot set the session's lock timeout: {e}"));
            }
            let checks: [(&'static str, CheckResult); 6] = [
                ("migrations", migrations(&client).await),
                ("triggers", triggers(&client).await),
                ("readers", readers(&client).await),
                ("tables", tables(&client, args.exact_counts).await),
                ("locks", locks(&client).await),
                ("outbox", outbox(&client, args).await),
            ];
            for (section, result) in checks {
                match result {
                    Ok(findings) => {
                        for (level, text) in findings {
                            report.push(section, level, text);
                        }
                    }
                    Err(e) => report.push(section, Level::Fail, format!("check failed: {e:#}")),
                }
            }
        }
        Err(e) => report.push("postgres", Level::Fail, format!("{e:#}")),
    }
    match crate::source::connect(&engine.redis_url).await {
        Ok(mut con) => {
            report.push("redis", Level::Ok, format!("connected to {}", engine.redis_url));
            for (section, result) in [
                ("streams", streams(&mut con, engine, args).await),
                ("dead letters", dead_letters(&mut con, engine).await),
            ] {
                match result {
                    Ok(findings) => {
                        for (level, text) in findings {
                            report.push(section, level, text);
                        }
                    }
                    Err(e) => report.push(section, Level::Fail, format!("check failed: {e:#}")),
                }
            }
        }
        Err(e) => report.push("redis", Level::Fail, format!("{e:#}")),
    }
    report
}

type CheckResult = Result<Vec<(Level, String)>>;

const SESSION: &str = "SET lock_timeout = '2s'; SET application_name = 'redis-postgres-sync doctor'";

async fn migrations(client: &Client) -> CheckResult {
    let mut out = Vec::new();
    let known = embedded::migrations::runner().get_migrations().clone();
    let has_history: bool =
        client.query_one("SELECT to_regclass('refinery_schema_history') IS NOT NULL", &[]).await?.get(0);
    let applied: Vec<(i64, String, String)> = if has_history {
        client
            .query("SELECT version::bigint, name, checksum FROM refinery_schema_history ORDER BY version", &[])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    } else {
        Vec::new()
    };
    let mut pending = Vec::new();
    for m in &known {
        let version = m.version() as i64;
        match applied.iter().find(|(v, _, _)| *v == version) {
            None => pending.push(format!("V{version}__{}", m.name())),
            Some((_, _, checksum)) if *checksum != m.checksum().to_string() => out.push((
                Level::Fail,
                format!(
                    "V{version}__{} was applied from a different file (checksum differs): the engine will refuse to start",
                    m.name()
                ),
            )),
            Some(_) => {}
        }
    }
    for (version, name, _) in &applied {
        if !known.iter().any(|m| m.version() as i64 == *version) {
            out.push((
                Level::Warn,
                format!("V{version}__{name} is applied but unknown to this binary (is it older than the database?)"),
            ));
        }
    }
    if pending.is_empty() {
        let latest = known.iter().max_by_key(|m| m.version()).map(|m| format!("V{}__{}", m.version(), m.name()));
        out.push((
            Level::Ok,
            format!("{} applied, none pending (latest {})", applied.len(), latest.unwrap_or_else(|| "-".into())),
        ));
    } else {
        out.push((
            Level::Fail,
            format!("{} pending: {} (start the engine once to apply them)", pending.len(), pending.join(", ")),
        ));
    }
    Ok(out)
}

async fn triggers(client: &Client) -> CheckResult {
    let names: Vec<&str> = TRIGGERS.iter().map(|(t, _, _)| *t).collect();
    let rows = client
        .query(
            "SELECT n.name, c.relname::text, t.tgenabled::text
               FROM unnest($1::text[]) WITH ORDINALITY AS n(name, i)
               LEFT JOIN pg_trigger t ON t.tgname = n.name AND NOT t.tgisinternal
                    AND t.tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)
               LEFT JOIN pg_class c ON c.oid = t.tgrelid
              ORDER BY n.i",
            &[&names],
        )
        .await?;
    let mut out = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        let table: Option<String> = row.get(1);
        let enabled: Option<String> = row.get(2);
        let (expected, migration) =
            TRIGGERS.iter().find(|(t, _, _)| *t == name).map(|(_, table, file)| (*table, *file)).unwrap_or_default();
        let finding = match (table, enabled.as_deref()) {
            (None, _) => {
                (Level::Fail, format!("{name} on {expected}: MISSING (re-create it from migrations/{migration})"))
            }
            (Some(t), _) if t != expected => (Level::Fail, format!("{name} is on {t}, expected on {expected}")),
            // 'O' fires in normal sessions, 'A' always; 'R' only under replication role.
            (Some(t), Some("O" | "A")) => (Level::Ok, format!("{name} on {t}: enabled")),
            (Some(t), Some("R")) => (
                Level::Fail,
                format!("{name} on {t}: fires only for replicas; run ALTER TABLE {t} ENABLE TRIGGER {name}"),
            ),
            (Some(t), _) => {
                (Level::Fail, format!("{name} on {t}: DISABLED; run ALTER TABLE {t} ENABLE TRIGGER {name}"))
            }
        };
        out.push(finding);
    }
    Ok(out)
}

async fn readers(client: &Client) -> CheckResult {
    let exists: bool = client.query_one("SELECT to_regprocedure('readers_mode()') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(vec![(Level::Warn, "no readers schema (migration V8 not applied)".into())]);
    }
    let mode: String = client.query_one("SELECT readers_mode()", &[]).await?.get(0);
    Ok(vec![match mode.as_str() {
        "maintained" => (Level::Ok, "readers.* read the maintained tables".to_owned()),
        "reference" => (
            Level::Warn,
            "readers.* read the reference views (rollback active); switch back with `rollback --to maintained`"
                .to_owned(),
        ),
        _ => {
            let rows =
                client.query("SELECT table_name, coalesce(source, 'missing') FROM readers_sources()", &[]).await?;
            let parts: Vec<String> =
                rows.iter().map(|r| format!("{}={}", r.get::<_, String>(0), r.get::<_, String>(1))).collect();
            (Level::Warn, format!("readers are mixed: {} (public = maintained, snapshot = reference)", parts.join(" ")))
        }
    }])
}

async fn tables(client: &Client, exact: bool) -> CheckResult {
    let rows = client
        .query(
            "SELECT n.name, c.oid IS NOT NULL, coalesce(s.n_live_tup, 0)
               FROM unnest($1::text[]) WITH ORDINALITY AS n(name, i)
               LEFT JOIN pg_class c ON c.relname = n.name AND c.relnamespace = 'public'::regnamespace
               LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
              ORDER BY n.i",
            &[&reported_tables()],
        )
        .await?;
    let mut out = vec![(
        Level::Info,
        format!("{:<28} {:>10} {:>14}", "table", "size", if exact { "rows" } else { "rows (est.)" }),
    )];
    for row in rows {
        let name: String = row.get(0);
        if !row.get::<_, bool>(1) {
            out.push((Level::Fail, format!("{name:<28} MISSING")));
            continue;
        }
        // Sizing opens the table, which waits behind an exclusive lock: one statement per
        // table, so a locked one is reported as such and the others still are sized.
        let size = client
            .query_one("SELECT pg_total_relation_size(format('public.%I', $1::text)::regclass)", &[&name])
            .await
            .map(|r| bytes(r.get(0)));
        let count = if exact {
            client
                .query_one(&format!("SELECT count(*) FROM public.\"{name}\""), &[])
                .await
                .map(|r| thousands(r.get::<_, i64>(0) as u64))
        } else {
            Ok(thousands(row.get::<_, i64>(2) as u64))
        };
        match (size, count) {
            (Ok(size), Ok(count)) => out.push((Level::Info, format!("{name:<28} {size:>10} {count:>14}"))),
            (Err(e), _) | (_, Err(e)) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
                out.push((Level::Warn, format!("{name:<28} locked by another session (see locks below)")))
            }
            (Err(e), _) | (_, Err(e)) => return Err(e.into()),
        }
    }
    Ok(out)
}

async fn locks(client: &Client) -> CheckResult {
    let mut out = Vec::new();
    let blocked = client
        .query(
            "SELECT pid, coalesce(usename::text, ''), pg_blocking_pids(pid),
                    extract(epoch FROM clock_timestamp() - coalesce(query_start, xact_start))::float8,
                    left(regexp_replace(coalesce(query, ''), '\\s+', ' ', 'g'), 100)
               FROM pg_stat_activity
              WHERE datname = current_database() AND cardinality(pg_blocking_pids(pid)) > 0
              ORDER BY query_start",
            &[],
        )
        .await?;
    for row in &blocked {
        let pid: i32 = row.get(0);
        let user: String = row.get(1);
        let by: Vec<i32> = row.get(2);
        let waited: Option<f64> = row.get(3);
        let query: String = row.get(4);
        out.push((
            Level::Warn,
            format!("pid {pid} ({user}) blocked by {:?} for {:.1}s: {query}", by, waited.unwrap_or(0.0)),
        ));
    }
    if blocked.is_empty() {
        out.push((Level::Ok, "no blocked sessions".into()));
    }
    let idle = client
        .query(
            "SELECT pid, extract(epoch FROM clock_timestamp() - xact_start)::float8
               FROM pg_stat_activity
              WHERE datname = current_database() AND state LIKE 'idle in transaction%'
                AND xact_start < clock_timestamp() - interval '1 minute'",
            &[],
        )
        .await?;
    for row in &idle {
        let pid: i32 = row.get(0);
        let age: f64 = row.get(1);
        out.push((Level::Warn, format!("pid {pid} idle in transaction for {age:.0}s (holds its locks)")));
    }
    let row = client
        .query_one(
            "SELECT (SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()),
                    (SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                      WHERE l.locktype = 'advisory' AND d.datname = current_database())",
            &[],
        )
        .await?;
    let deadlocks: Option<i64> = row.get(0);
    let advisory: i64 = row.get(1);
    out.push((
        Level::Info,
        format!("{} deadlocks since statistics reset; {advisory} advisory locks held now", deadlocks.unwrap_or(0)),
    ));
    Ok(out)
}

async fn outbox(client: &Client, args: &DoctorArgs) -> CheckResult {
    let status = progress::outbox_status(client).await?;
    let age = status.oldest_age_seconds.unwrap_or(0.0);
    let text = if status.rows == 0 {
        "term_update_outbox: empty".to_owned()
    } else {
        format!("term_update_outbox: {} rows, oldest {age:.0}s old", status.rows)
    };
    if age > args.outbox_max_age_secs as f64 {
        Ok(vec![(
            Level::Warn,
            format!("{text}: not being published (is an engine running and Redis reachable? an engine republishes at start-up)"),
        )])
    } else {
        Ok(vec![(Level::Ok, text)])
    }
}

async fn streams(con: &mut MultiplexedConnection, engine: &EngineConfig, args: &DoctorArgs) -> CheckResult {
    let mut out = vec![(
        Level::Info,
        format!(
            "{:<40} {:<22} {:>9} {:>9} {:>8} {:>9} {:>14}",
            "stream", "group", "length", "lag", "pending", "consumers", "oldest pending"
        ),
    )];
    let targets = engine
        .streams
        .iter()
        .map(|s| (s.as_str(), engine.group.as_str()))
        .chain(std::iter::once((engine.term_updates_stream.as_str(), args.analytics_group.as_str())));
    for (stream, group) in targets {
        let status = progress::group_status(con, stream, group).await?;
        out.push(stream_finding(&status));
    }
    Ok(out)
}

fn stream_finding(s: &GroupStatus) -> (Level, String) {
    if !s.group_exists {
        let level = if s.length > 0 { Level::Warn } else { Level::Info };
        let why = if s.stream_exists { "group missing" } else { "stream missing" };
        let hint =
            if s.length > 0 { ": nothing consumes these entries (wrong --group, or never started?)" } else { "" };
        return (level, format!("{:<40} {:<22} {:>9} {why}{hint}", s.stream, s.group, thousands(s.length)));
    }
    let lag = s.lag.map(thousands).unwrap_or_else(|| "unknown".into());
    let oldest = s.oldest_pending_age.map(human).unwrap_or_else(|| "-".into());
    (
        Level::Ok,
        format!(
            "{:<40} {:<22} {:>9} {:>9} {:>8} {:>9} {:>14}",
            s.stream,
            s.group,
            thousands(s.length),
            lag,
            thousands(s.pending),
            s.consumers,
            oldest
        ),
    )
}

async fn dead_letters(con: &mut MultiplexedConnection, engine: &EngineConfig) -> CheckResult {
    let mut out = Vec::new();
    let sources = engine.streams.iter().chain(std::iter::once(&engine.term_updates_stream));
    for stream in sources {
        let key = dead_letter_stream(stream);
        let len: u64 = redis::cmd("XLEN").arg(&key).query_async(con).await?;
        out.push(if len == 0 {
            (Level::Ok, format!("{key}: empty"))
        } else {
            (Level::Warn, format!("{key}: {} rejected entries; inspect with XRANGE {key} - + COUNT 10", thousands(len)))
        });
    }
    Ok(out)
}

fn thousands(n: u64) -> String {
    indicatif::HumanCount(n).to_string()
}

fn bytes(n: i64) -> String {
    indicatif::BinaryBytes(n.max(0) as u64).to_string()
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}
