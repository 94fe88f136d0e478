//! The backfill progress display: a bar on a terminal, or a log line per interval, from the
//! monitor's last observation and this process's counters, so the bar moves smoothly between
//! observations.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{HumanCount, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use super::monitor::{Monitor, Observation, DEFAULT_MONITOR_INTERVAL};
use crate::runtime::telemetry::PROGRESS;

/// How the engine shows backfill progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// With `--backfill`: a bar when stdout is a terminal, log lines otherwise. Without: none.
    Auto,
    /// A live bar on stdout (drawn only when stdout is a terminal).
    Bar,
    /// A plain log line every `--progress-interval-secs`.
    Log,
    /// No progress display (metrics and /health still report lag).
    Off,
}

/// Progress and monitoring settings of `redis-postgres-sync`.
#[derive(Args, Clone, Debug)]
pub struct ProgressArgs {
    /// Progress display: auto, bar, log or off.
    #[arg(long, env = "PROGRESS", value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    /// Seconds between plain progress log lines (when stdout is not a terminal).
    #[arg(long, env = "PROGRESS_INTERVAL_SECS", default_value_t = 10)]
    pub progress_interval_secs: u64,

    /// Seconds between stream lag / pending / outbox observations (metrics, /health, progress).
    #[arg(long, env = "MONITOR_INTERVAL_SECS", default_value_t = DEFAULT_MONITOR_INTERVAL.as_secs())]
    pub monitor_interval_secs: u64,
}

impl ProgressArgs {
    pub fn monitor_interval(&self) -> Duration {
        Duration::from_secs(self.monitor_interval_secs.max(1))
    }

    pub fn log_interval(&self) -> Duration {
        Duration::from_secs(self.progress_interval_secs.max(1))
    }
}

// Log lines must not tear the bar: while one is drawn, writes go through `suspend`.
static BAR: RwLock<Option<ProgressBar>> = RwLock::new(None);

/// A `tracing_subscriber` writer that prints to stderr and keeps the progress bar (on
/// stdout, when it is a terminal) intact.
pub fn log_writer() -> LogWriter {
    LogWriter
}

pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.read().ok().and_then(|b| b.clone());
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().lock().write_all(buf))?,
            None => std::io::stderr().lock().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Where a backfill stands, from the last observation and this process's counters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Messages in the streams (the group started at their beginning).
    pub total: u64,
    pub done: u64,
    /// Not yet delivered plus delivered and not acked, group-wide.
    pub remaining: u64,
    pub lag: u64,
    pub pending: u64,
    pub events_per_second: f64,
    pub messages_per_second: f64,
    pub eta: Option<Duration>,
}

/// Throughput over a sliding window of this process's counters.
struct Rates {
    samples: VecDeque<(Instant, u64, u64)>,
    window: Duration,
}

impl Rates {
    fn new(window: Duration) -> Rates {
        Rates { samples: VecDeque::new(), window }
    }

    /// Record the counters now; returns (events/s, messages/s) over the window.
    fn sample(&mut self) -> (f64, f64) {
        let now = Instant::now();
        let events = PROGRESS.events.load(Ordering::Relaxed);
        let messages = PROGRESS.messages.load(Ordering::Relaxed);
        self.samples.push_back((now, events, messages));
        while self.samples.len() > 2 && now.duration_since(self.samples[0].0) > self.window {
            self.samples.pop_front();
        }
        let (t0, e0, m0) = self.samples[0];
        let secs = now.duration_since(t0).as_secs_f64();
        if secs < 0.5 {
            return (0.0, 0.0);
        }
        ((events - e0) as f64 / secs, (messages - m0) as f64 / secs)
    }
}

/// Combine an observation with what this process has done since it was taken; `None` while
/// Redis cannot tell a group's lag (then neither a total nor a percentage would be true).
pub fn estimate(
    observation: &Observation,
    messages_now: u64,
    events_per_second: f64,
    messages_per_second: f64,
) -> Option<Estimate> {
    if !observation.lag_known() {
        return None;
    }
    let since = messages_now.saturating_sub(observation.messages_at);
    let remaining = (observation.lag() + observation.pending()).saturating_sub(since);
    let total = observation.length().max(remaining);
    let eta = (messages_per_second > 0.0).then(|| Duration::from_secs_f64(remaining as f64 / messages_per_second));
    Some(Estimate {
        total,
        done: total - remaining,
        remaining,
        lag: observation.lag(),
        pending: observation.pending(),
        events_per_second,
        messages_per_second,
        eta,
    })
}

/// The backfill progress display, drawn until [`Display::finish`].
pub struct Display {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Display {
    /// Start the display `mode` asks for (see [`ProgressMode::Auto`]); `None` when off.
    pub fn start(mode: ProgressMode, backfill: bool, monitor: Monitor, log_every: Duration) -> Option<Display> {
        let terminal = std::io::stdout().is_terminal();
        let mode = match mode {
            ProgressMode::Auto if !backfill => return None,
            ProgressMode::Auto if terminal => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Log,
            ProgressMode::Off => return None,
            other => other,
        };
        let (stop, stopped) = watch::channel(false);
        let task = match mode {
            ProgressMode::Bar => tokio::spawn(draw_bar(monitor, stopped)),
            _ => tokio::spawn(log_lines(monitor, stopped, log_every)),
        };
        Some(Display { stop, task })
    }

    /// Stop drawing and clear the bar, so the final summary line prints cleanly.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.green} {elapsed_precise} [{bar:24.cyan/blue}] {percent:>3}% {wide_msg}")
        .expect("valid template")
        .progress_chars("=> ")
}

/// Until the totals are known there is no bar to fill: a spinner and the counters.
fn waiting_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.green} {elapsed_precise} {wide_msg}").expect("valid template")
}

async fn draw_bar(monitor: Monitor, mut stopped: watch::Receiver<bool>) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
    bar.set_style(waiting_style());
    let mut known = false;
    if let Ok(mut b) = BAR.write() {
        *b = Some(bar.clone());
    }
    let mut rates = Rates::new(Duration::from_secs(10));
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => break,
        }
        let (events_per_second, messages_per_second) = rates.sample();
        let messages_now = PROGRESS.messages.load(Ordering::Relaxed);
        let estimated =
            monitor.latest().and_then(|o| estimate(&o, messages_now, events_per_second, messages_per_second));
        match estimated {
            Some(e) => {
                if !known {
                    bar.set_style(bar_style());
                    known = true;
                }
                bar.set_length(e.total.max(1));
                bar.set_position(e.done);
                bar.set_message(format!(
                    "{}/{} msgs | {} events/s | lag {} | pending {} | ETA {}",
                    HumanCount(e.done),
                    HumanCount(e.total),
                    HumanCount(events_per_second as u64),
                    HumanCount(e.lag),
                    HumanCount(e.pending),
                    e.eta.map(|d| HumanDuration(d).to_string()).unwrap_or_else(|| "-".into())
                ));
            }
            None => bar.set_message(format!(
                "{} events | {} events/s | stream totals not known yet",
                HumanCount(PROGRESS.events.load(Ordering::Relaxed)),
                HumanCount(events_per_second as u64)
            )),
        }
        bar.tick();
    }
    if let Ok(mut b) = BAR.write() {
        *b = None;
    }
    bar.finish_and_clear();
}

/// One log line per interval: where the backfill stands, or, while the totals are not
/// known, what this process has done.
async fn log_lines(monitor: Monitor, mut stopped: watch::Receiver<bool>, every: Duration) {
    let mut rates = Rates::new(every.max(Duration::from_secs(10)));
    rates.sample();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => return,
        }
        let (events_per_second, messages_per_second) = rates.sample();
        let events = PROGRESS.events.load(Ordering::Relaxed);
        let messages_now = PROGRESS.messages.load(Ordering::Relaxed);
        let rate = format!("{events_per_second:.0} events/s");
        let estimated =
            monitor.latest().and_then(|o| estimate(&o, messages_now, events_per_second, messages_per_second));
        let Some(e) = estimated else {
            info!(events, rate, "backfill progress: stream totals not known yet");
            continue;
        };
        let percent = if e.total == 0 { 100.0 } else { 100.0 * e.done as f64 / e.total as f64 };
        info!(
            messages = format!("{}/{}", e.done, e.total),
            percent = format!("{percent:.1}"),
            events,
            rate,
            lag = e.lag,
            pending = e.pending,
            eta = e.eta.map(|d| HumanDuration(d).to_string()).unwrap_or_else(|| "-".into()),
            "backfill progress"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::monitor::Observation;
    use crate::stream::status::GroupStatus;
    use std::time::SystemTime;

    fn observation(lag: u64, pending: u64, length: u64, messages_at: u64) -> Observation {
        let g = GroupStatus { lag: Some(lag), pending, length, ..Default::default() };
        Observation { groups: vec![g], outbox: None, reorgs: None, at: SystemTime::now(), messages_at }
    }

    #[test]
    fn no_estimate_while_a_lag_is_unknown() {
        let mut o = observation(10, 0, 4094, 0);
        o.groups.push(GroupStatus { lag: None, length: 4094, ..Default::default() });
        assert_eq!(estimate(&o, 0, 0.0, 0.0), None);
    }

    #[test]
    fn estimate_subtracts_work_done_since_the_observation() {
        let o = observation(900, 100, 2000, 50);
        let e = estimate(&o, 250, 5000.0, 100.0).expect("lag known");
        assert_eq!(e.remaining, 800);
        assert_eq!((e.done, e.total), (1200, 2000));
        assert_eq!(e.eta, Some(Duration::from_secs(8)));
    }

    #[test]
    fn estimate_never_goes_negative_or_past_the_total() {
        let o = observation(10, 0, 5, 0);
        let e = estimate(&o, 100, 0.0, 0.0).expect("lag known");
        assert_eq!((e.remaining, e.done, e.total), (0, 5, 5));
        assert_eq!(e.eta, None);
        let e = estimate(&o, 0, 0.0, 0.0).expect("lag known");
        assert_eq!((e.remaining, e.done, e.total), (10, 0, 10));
    }
}
