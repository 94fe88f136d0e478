//! Retrying until stopped: the crate's one retry mechanism. Every operation that must
//! eventually succeed (connecting, reading, applying a batch, acking, publishing) counts its
//! failures in a [`Retry`], which logs them and waits out an exponential [`Backoff`] unless a
//! stop is requested meanwhile.

use std::fmt::Display;
use std::time::Duration;

use tracing::warn;

use super::Stop;

/// How long to wait after the n-th consecutive failure: 200 ms, doubling, at most 5 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const DEFAULT: Backoff = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(5) };

    /// The wait after `failures` consecutive failures (≥ 1).
    pub fn delay(&self, failures: u32) -> Duration {
        self.base.saturating_mul(1 << failures.min(16)).min(self.max)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::DEFAULT
    }
}

/// The consecutive failures of one operation.
#[derive(Debug, Default)]
pub struct Retry {
    backoff: Backoff,
    failures: u32,
}

impl Retry {
    pub fn new() -> Retry {
        Retry::default()
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The operation succeeded: the next failure starts the backoff over.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// The operation failed (the caller has said why): wait out the backoff. `false` if a
    /// stop was requested before or during the wait, meaning give up.
    pub async fn wait(&mut self, stop: &mut Stop) -> bool {
        self.failures += 1;
        stop.sleep(self.backoff.delay(self.failures)).await
    }

    /// The operation failed with `error`: log it as `what failed; retrying`, then [`wait`].
    ///
    /// [`wait`]: Retry::wait
    pub async fn failed(&mut self, stop: &mut Stop, what: &str, error: &impl Display) -> bool {
        warn!(error = %format!("{error:#}"), attempt = self.failures + 1, "{what} failed; retrying");
        self.wait(stop).await
    }
}

/// Evaluate `$attempt`, an expression giving a `Result` (typically ending in `.await`),
/// until it is `Ok`, logging each failure as "`$what` failed; retrying" and waiting out the
/// backoff; `Some(value)`, or `None` once a stop is requested. The first attempt is always
/// made (on shutdown, a batch that committed still gets its ack tried); a stop is noticed
/// after a failure, before and during each wait.
///
/// A macro rather than a function taking an async closure: the attempt borrows the caller's
/// state mutably on every try, and a future holding such a closure is not `Send` (a rustc
/// limitation), while the engine's and the worker's futures must be.
///
/// With `fail_fast`, an error that [`Permanence`](super::exit::Permanence) calls permanent
/// ends it at once: the result is then `Err(Fatal)`, else `Ok(Some(value))` or `Ok(None)`.
macro_rules! until_stopped {
    ($stop:expr, $what:expr, $attempt:expr, fail_fast $(,)?) => {{
        let mut retry = $crate::runtime::Retry::new();
        loop {
            match $attempt {
                Ok(value) => break Ok(Some(value)),
                Err(error) => {
                    if let Some(fatal) = $crate::runtime::exit::Permanence::fatal(&error, $what) {
                        break Err(fatal);
                    }
                    if !retry.failed($stop, $what, &error).await {
                        break Ok(None);
                    }
                }
            }
        }
    }};
    ($stop:expr, $what:expr, $attempt:expr $(,)?) => {{
        let mut retry = $crate::runtime::Retry::new();
        loop {
            match $attempt {
                Ok(value) => break Some(value),
                Err(error) => {
                    if !retry.failed($stop, $what, &error).await {
                        break None;
                    }
                }
            }
        }
    }};
}
pub(crate) use until_stopped;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::runtime::shutdown::StopSwitch;

    #[test]
    fn backoff_doubles_from_200_ms_up_to_5_s() {
        let ms: Vec<u128> = (1..=8).map(|n| Backoff::DEFAULT.delay(n).as_millis()).collect();
        assert_eq!(ms, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(Backoff::DEFAULT.delay(u32::MAX), Duration::from_secs(5));
    }

    /// Fails until call number `succeed_at` (never if 0); counts calls.
    async fn attempt(calls: &mut u32, succeed_at: u32) -> Result<u32, &'static str> {
        *calls += 1;
        if *calls == succeed_at {
            Ok(*calls)
        } else {
            Err("not yet")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_waiting_out_each_backoff() {
        let (_switch, mut stop) = StopSwitch::new();
        let started = Instant::now();
        let mut calls = 0;
        let value = until_stopped!(&mut stop, "the test operation", attempt(&mut calls, 4).await);
        assert_eq!(value, Some(4));
        assert_eq!(started.elapsed(), Duration::from_millis(200 + 400 + 800));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_during_the_wait_gives_up_at_once() {
        let (switch, mut stop) = StopSwitch::new();
        let started = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            switch.stop();
        });
        let mut calls = 0;
        let value = until_stopped!(&mut stop, "the test operation", attempt(&mut calls, 0).await);
        assert_eq!((value, calls), (None, 2));
        // Failures at 0 and 200 ms; the stop comes 100 ms into the 400 ms wait.
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn once_stopped_one_attempt_is_made_and_a_failure_ends_it() {
        let (switch, mut stop) = StopSwitch::new();
        switch.stop();
        let started = Instant::now();
        let mut calls = 0;
        let failed = until_stopped!(&mut stop, "the test operation", attempt(&mut calls, 0).await);
        assert_eq!((failed, calls), (None, 1));
        assert_eq!(started.elapsed(), Duration::ZERO, "no wait once stopped");
        let mut calls = 0;
        let done = until_stopped!(&mut stop, "the test operation", attempt(&mut calls, 1).await);
        assert_eq!(done, Some(1), "an attempt that succeeds still counts");
    }

    struct Flaky(&'static str);

    impl std::fmt::Display for Flaky {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl crate::runtime::exit::Permanence for Flaky {
        fn fatal(&self, what: &str) -> Option<crate::runtime::exit::Fatal> {
            (self.0 == "wrong password").then(|| crate::runtime::exit::Fatal::Refused(format!("{what}: {}", self.0)))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fail_fast_retries_transient_errors_and_ends_on_a_permanent_one() {
        let (_switch, mut stop) = StopSwitch::new();
        let started = Instant::now();
        let mut errors = vec![Flaky("wrong password"), Flaky("connection refused")].into_iter();
        let outcome: Result<Option<()>, _> =
            until_stopped!(&mut stop, "connecting", Err(errors.next().unwrap()), fail_fast);
        assert_eq!(outcome, Err(crate::runtime::exit::Fatal::Refused("connecting: wrong password".into())));
        assert_eq!(started.elapsed(), Duration::ZERO, "no wait before failing fast");
        let mut calls = 0;
        let outcome = until_stopped!(
            &mut stop,
            "connecting",
            {
                calls += 1;
                if calls < 3 {
                    Err(Flaky("connection refused"))
                } else {
                    Ok(calls)
                }
            },
            fail_fast
        );
        assert_eq!(outcome, Ok(Some(3)));
        assert_eq!(started.elapsed(), Duration::from_millis(600), "transient errors are retried");
    }

    #[tokio::test(start_paused = true)]
    async fn success_starts_the_backoff_over() {
        let (_switch, mut stop) = StopSwitch::new();
        let mut retry = Retry::new();
        assert!(retry.wait(&mut stop).await && retry.wait(&mut stop).await);
        assert_eq!(retry.failures(), 2);
        retry.succeeded();
        let started = Instant::now();
        assert!(retry.wait(&mut stop).await);
        assert_eq!(started.elapsed(), Duration::from_millis(200));
    }
}
