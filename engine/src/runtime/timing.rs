//! Time per pipeline stage.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use super::telemetry;

/// Time per stage, summed; every addition is also recorded in the stage histogram.
#[derive(Debug, Default, Clone)]
pub struct StageTimes(pub BTreeMap<&'static str, Duration>);

impl StageTimes {
    pub fn add(&mut self, stage: &'static str, took: Duration) {
        *self.0.entry(stage).or_default() += took;
        metrics::histogram!(telemetry::STAGE_SECONDS, "stage" => stage).record(took.as_secs_f64());
    }

    /// Add times already recorded elsewhere (not recorded again).
    pub fn merge(&mut self, other: &StageTimes) {
        for (stage, took) in &other.0 {
            *self.0.entry(stage).or_default() += *took;
        }
    }
}

/// Await one stage and record how long it took.
pub async fn timed<T>(times: &mut StageTimes, stage: &'static str, fut: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = fut.await;
    times.add(stage, started.elapsed());
    out
}
