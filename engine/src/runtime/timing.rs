//! Time per pipeline stage.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use super::telemetry;

/// Time per stage, two ways. `summed` adds every measurement: when a batch's parts run
/// concurrently their times add up, so a stage can sum to more than the run's wall time.
/// `wall` counts concurrent parts once (the longest of them), which is the time the stage
/// held the batch up. Every addition is also recorded in the stage histogram.
#[derive(Debug, Default, Clone)]
pub struct StageTimes {
    pub summed: BTreeMap<&'static str, Duration>,
    pub wall: BTreeMap<&'static str, Duration>,
}

impl StageTimes {
    pub fn add(&mut self, stage: &'static str, took: Duration) {
        *self.summed.entry(stage).or_default() += took;
        *self.wall.entry(stage).or_default() += took;
        metrics::histogram!(telemetry::STAGE_SECONDS, "stage" => stage).record(took.as_secs_f64());
    }

    /// Add times already recorded elsewhere, measured one after the other.
    pub fn merge(&mut self, other: &StageTimes) {
        for (stage, took) in &other.summed {
            *self.summed.entry(stage).or_default() += *took;
        }
        for (stage, took) in &other.wall {
            *self.wall.entry(stage).or_default() += *took;
        }
    }

    /// Add the times of parts that ran at the same time: summed over them, and the longest
    /// of them as wall time.
    pub fn merge_concurrent<'a>(&mut self, parts: impl IntoIterator<Item = &'a StageTimes>) {
        let mut longest: BTreeMap<&'static str, Duration> = BTreeMap::new();
        for part in parts {
            for (stage, took) in &part.summed {
                *self.summed.entry(stage).or_default() += *took;
            }
            for (stage, took) in &part.wall {
                let max = longest.entry(stage).or_default();
                *max = (*max).max(*took);
            }
        }
        for (stage, took) in longest {
            *self.wall.entry(stage).or_default() += took;
        }
    }

    pub fn summed(&self, stage: &str) -> Duration {
        self.summed.get(stage).copied().unwrap_or_default()
    }

    pub fn wall(&self, stage: &str) -> Duration {
        self.wall.get(stage).copied().unwrap_or_default()
    }
}

/// `stage=summed` per stage, with `(wall W)` where concurrent parts made them differ.
impl fmt::Display for StageTimes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (stage, summed) in &self.summed {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{stage}={:.2}s", summed.as_secs_f64())?;
            let wall = self.wall(stage);
            if wall + Duration::from_millis(5) < *summed {
                write!(f, " (wall {:.2}s)", wall.as_secs_f64())?;
            }
        }
        Ok(())
    }
}

/// Await one stage and record how long it took.
pub async fn timed<T>(times: &mut StageTimes, stage: &'static str, fut: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = fut.await;
    times.add(stage, started.elapsed());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(pairs: &[(&'static str, u64)]) -> StageTimes {
        let mut t = StageTimes::default();
        for &(stage, ms) in pairs {
            t.add(stage, Duration::from_millis(ms));
        }
        t
    }

    #[test]
    fn concurrent_parts_sum_but_count_once_as_wall_time() {
        let mut run = times(&[("read", 10)]);
        run.merge_concurrent(&[times(&[("merge", 300), ("copy", 20)]), times(&[("merge", 200), ("copy", 50)])]);
        assert_eq!(run.summed("merge"), Duration::from_millis(500));
        assert_eq!(run.wall("merge"), Duration::from_millis(300));
        assert_eq!(run.wall("copy"), Duration::from_millis(50));
        assert_eq!(run.wall("read"), Duration::from_millis(10));
        assert_eq!(run.to_string(), "copy=0.07s (wall 0.05s) merge=0.50s (wall 0.30s) read=0.01s");
    }
}
