//! The checks `doctor` runs, each yielding its findings.

use std::time::Duration;

use anyhow::Result;
use redis::aio::MultiplexedConnection;
use tokio_postgres::Client;

use super::{reported_tables, DoctorArgs, Level, TRIGGERS};
use crate::ops::monitor::{outbox_status, reorg_status};
use crate::pg::{schema, sql};
use crate::stream::dead_letter_stream;
use crate::stream::status::{group_status, GroupStatus};

pub(super) type CheckResult = Result<Vec<(Level, String)>>;

pub(super) async fn migrations(client: &Client) -> CheckResult {
    let mut out = Vec::new();
    let known = schema::migrations();
    let has_history: bool = client.query_one(sql::MIGRATION_HISTORY_EXISTS, &[]).await?.get(0);
    let applied: Vec<(i64, String, String)> = if has_history {
        client.query(sql::APPLIED_MIGRATIONS, &[]).await?.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
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

/// Chain reorganizations applied: how many, and the latest (README → Chain reorganizations).
pub(super) async fn reorgs(client: &Client) -> CheckResult {
    let row = client.query_one(sql::REORG_SUMMARY, &[]).await?;
    let (count, retracted, orphaned): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    if count == 0 {
        return Ok(vec![(Level::Ok, "none applied".into())]);
    }
    let mut out = vec![(
        Level::Ok,
        format!("{count} applied: {retracted} logged events retracted, {orphaned} orphaned blocks known"),
    )];
    let latest: Option<String> = row.get(3);
    if let Some(latest) = latest {
        out.push((Level::Ok, format!("latest: {latest}")));
    }
    let bases = reorg_status(client).await?;
    let (unbased, bases) = (bases.unbased_searches, bases.bases);
    out.push((
        Level::Ok,
        format!(
            "{unbased} keys searched below a fork without a reorg base (the log read down); {bases} bases kept now"
        ),
    ));
    Ok(out)
}

pub(super) async fn triggers(client: &Client) -> CheckResult {
    let names: Vec<&str> = TRIGGERS.iter().map(|(t, _)| *t).collect();
    let rows = client.query(sql::TRIGGER_STATUS, &[&names]).await?;
    let mut out = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        let table: Option<String> = row.get(1);
        let enabled: Option<String> = row.get(2);
        let expected = TRIGGERS.iter().find(|(t, _)| *t == name).map(|(_, table)| *table).unwrap_or_default();
        let finding = match (table, enabled.as_deref()) {
            (None, _) => (Level::Fail, format!("{name} on {expected}: MISSING (restart the engine: it re-creates it)")),
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

pub(super) async fn readers(client: &Client) -> CheckResult {
    let exists: bool = client.query_one(sql::READERS_FUNCTIONS_EXIST, &[]).await?.get(0);
    if !exists {
        return Ok(vec![(Level::Warn, "no readers functions (has the engine been started on this database?)".into())]);
    }
    let mode: String = client.query_one(sql::READERS_MODE, &[]).await?.get(0);
    Ok(vec![match mode.as_str() {
        "maintained" => (Level::Ok, "readers.* read the maintained tables".to_owned()),
        "reference" => (
            Level::Warn,
            "readers.* read the reference views (rollback active); switch back with `rollback --to maintained`"
                .to_owned(),
        ),
        _ => {
            let rows = client.query(sql::READERS_SOURCES, &[]).await?;
            let parts: Vec<String> =
                rows.iter().map(|r| format!("{}={}", r.get::<_, String>(0), r.get::<_, String>(1))).collect();
            (Level::Warn, format!("readers are mixed: {} (public = maintained, snapshot = reference)", parts.join(" ")))
        }
    }])
}

pub(super) async fn tables(client: &Client, exact: bool) -> CheckResult {
    let rows = client.query(sql::TABLE_STATS, &[&reported_tables()]).await?;
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
        let size = client.query_one(sql::TABLE_SIZE, &[&name]).await.map(|r| bytes(r.get(0)));
        let count = if exact {
            client.query_one(&sql::count_rows(&name), &[]).await.map(|r| thousands(r.get::<_, i64>(0) as u64))
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

pub(super) async fn locks(client: &Client) -> CheckResult {
    let mut out = Vec::new();
    let blocked = client.query(sql::BLOCKED_SESSIONS, &[]).await?;
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
    let idle = client.query(sql::IDLE_IN_TRANSACTION, &[]).await?;
    for row in &idle {
        let pid: i32 = row.get(0);
        let age: f64 = row.get(1);
        out.push((Level::Warn, format!("pid {pid} idle in transaction for {age:.0}s (holds its locks)")));
    }
    let row = client.query_one(sql::DEADLOCKS_AND_ADVISORY_LOCKS, &[]).await?;
    let deadlocks: Option<i64> = row.get(0);
    let advisory: i64 = row.get(1);
    out.push((
        Level::Info,
        format!("{} deadlocks since statistics reset; {advisory} advisory locks held now", deadlocks.unwrap_or(0)),
    ));
    Ok(out)
}

pub(super) async fn outbox(client: &Client, args: &DoctorArgs) -> CheckResult {
    let status = outbox_status(client).await?;
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

pub(super) async fn streams(con: &mut MultiplexedConnection, args: &DoctorArgs) -> CheckResult {
    let mut out = vec![(
        Level::Info,
        format!(
            "{:<40} {:<22} {:>9} {:>9} {:>8} {:>9} {:>14}",
            "stream", "group", "length", "lag", "pending", "consumers", "oldest pending"
        ),
    )];
    let targets = args
        .streams
        .iter()
        .map(|s| (s.as_str(), args.group.as_str()))
        .chain(std::iter::once((args.term_updates_stream.as_str(), args.analytics_group.as_str())));
    for (stream, group) in targets {
        let status = group_status(con, stream, group).await?;
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

pub(super) async fn dead_letters(con: &mut MultiplexedConnection, args: &DoctorArgs) -> CheckResult {
    let mut out = Vec::new();
    let sources = args.streams.iter().chain(std::iter::once(&args.term_updates_stream));
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
