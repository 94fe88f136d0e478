//! Doctor: the seed's troubleshooting queries as one command. It only reads: it applies no
//! migration, creates no group and changes no setting, so it is safe against production.
//!
//! Each check yields findings at a [`Level`]; anything at [`Level::Fail`] (the engine
//! cannot be keeping the tables right: a missing or disabled trigger, pending or divergent
//! migrations, an unreachable dependency) makes the command exit 1. Warnings point at
//! conditions that need a look but can be transient (blocked sessions, dead letters, a
//! stuck outbox, readers on the reference views).

use std::fmt;

mod checks;

use clap::Args;

use crate::ingest::config::DEFAULT_STREAMS;
use crate::ingest::copy::EVENT_TABLES;
use crate::ops::verify::DERIVED_TABLES;
use crate::pg::DEFAULT_DATABASE_URL;
use crate::pg::{self, sql};
use crate::runtime::redact::redact;
use crate::stream;
use crate::stream::{DEFAULT_REDIS_URL, DEFAULT_TERM_UPDATES_STREAM, ENGINE_GROUP, WORKER_GROUP};

/// The statement-level triggers that keep level 1, and the table each belongs on
/// (migrations/repeatable/merge.sql creates them, and re-creates a missing one at every
/// engine start).
pub const TRIGGERS: [(&str, &str); 5] = [
    ("trigger_atom_created", "atom_created_events"),
    ("trigger_triple_created", "triple_created_events"),
    ("trigger_deposited", "deposited_events"),
    ("trigger_redeemed", "redeemed_events"),
    ("trigger_share_price_changed", "share_price_changed_events"),
];

/// Tables reported with their size and row count: the log, the derived tables, the outbox.
pub fn reported_tables() -> Vec<&'static str> {
    EVENT_TABLES.into_iter().chain(DERIVED_TABLES).chain(["term_update_outbox"]).collect()
}

/// What doctor looks at: the engine's database, Redis, streams and group, and the worker's
/// group on `term_updates`.
#[derive(Args, Clone, Debug)]
pub struct DoctorArgs {
    /// PostgreSQL connection URL (the engine's database).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Redis connection URL.
    #[arg(long, env = "REDIS_URL", default_value = DEFAULT_REDIS_URL)]
    pub redis_url: String,

    /// The engine's input streams, comma separated.
    #[arg(long, env = "STREAMS", value_delimiter = ',', default_value = DEFAULT_STREAMS)]
    pub streams: Vec<String>,

    /// The engine's consumer group.
    #[arg(long, env = "CONSUMER_GROUP", default_value = ENGINE_GROUP)]
    pub group: String,

    /// The stream the engine publishes term updates to.
    #[arg(long, env = "TERM_UPDATES_STREAM", default_value = DEFAULT_TERM_UPDATES_STREAM)]
    pub term_updates_stream: String,

    /// The analytics-worker consumer group to report on `term_updates`.
    #[arg(long, env = "ANALYTICS_GROUP", default_value = WORKER_GROUP)]
    pub analytics_group: String,

    /// Count rows exactly (count(*), slow on large tables) instead of the statistics' estimate.
    #[arg(long)]
    pub exact_counts: bool,

    /// Warn when the oldest unpublished outbox row is older than this many seconds.
    #[arg(long, default_value_t = 60)]
    pub outbox_max_age_secs: u64,
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
pub async fn run(args: &DoctorArgs) -> Report {
    let mut report = Report::default();
    match pg::connect_one(&args.database_url).await {
        Ok(client) => {
            report.push("postgres", Level::Ok, format!("connected to {}", redact(&args.database_url)));
            if let Err(e) = client.batch_execute(sql::DOCTOR_SESSION).await {
                report.push("postgres", Level::Warn, format!("cannot set the session's lock timeout: {e}"));
            }
            let checks: [(&'static str, checks::CheckResult); 7] = [
                ("migrations", checks::migrations(&client).await),
                ("triggers", checks::triggers(&client).await),
                ("readers", checks::readers(&client).await),
                ("tables", checks::tables(&client, args.exact_counts).await),
                ("locks", checks::locks(&client).await),
                ("outbox", checks::outbox(&client, args).await),
                ("reorgs", checks::reorgs(&client).await),
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
    match stream::connect(&args.redis_url).await {
        Ok(mut con) => {
            report.push("redis", Level::Ok, format!("connected to {}", redact(&args.redis_url)));
            for (section, result) in [
                ("streams", checks::streams(&mut con, args).await),
                ("dead letters", checks::dead_letters(&mut con, args).await),
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
        Err(e) => {
            report.push("redis", Level::Fail, format!("cannot connect to Redis at {}: {e}", redact(&args.redis_url)))
        }
    }
    report
}
