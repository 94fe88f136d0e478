//! Shutdown: the signal the binaries wait for, the [`Stop`] every loop watches, and the grace
//! a run gets to finish the work in flight once asked to stop.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

/// Once shutdown is requested, how long the work in flight may take to commit and ack before
/// it is abandoned: dropped uncommitted (PostgreSQL rolls it back) with its entries left
/// pending for the next run. Keeps a stop bounded even when a query hangs.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Whether a stop was requested. Cheap to clone: every loop and task holds one.
#[derive(Clone, Debug)]
pub struct Stop(watch::Receiver<bool>);

/// The sending side of a [`Stop`].
#[derive(Debug)]
pub struct StopSwitch(watch::Sender<bool>);

impl StopSwitch {
    pub fn new() -> (StopSwitch, Stop) {
        let (tx, rx) = watch::channel(false);
        (StopSwitch(tx), Stop(rx))
    }

    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl Stop {
    pub fn requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once a stop is requested (never, if its switch is gone without one).
    pub async fn wait(&mut self) {
        if self.0.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Sleep for `duration`; `false` if a stop was requested before or during it.
    pub async fn sleep(&mut self, duration: Duration) -> bool {
        if self.requested() {
            return false;
        }
        tokio::select! {
            biased;
            _ = self.wait() => false,
            _ = tokio::time::sleep(duration) => true,
        }
    }
}

/// Run `work` until it ends or `shutdown` resolves. On shutdown the work is asked to stop and
/// gets [`SHUTDOWN_GRACE`] to finish what it has in flight; `None` if it had to be abandoned.
pub async fn with_grace<F: Future>(
    shutdown: impl Future<Output = ()>,
    work: impl FnOnce(Stop) -> F,
) -> Option<F::Output> {
    let (switch, stop) = StopSwitch::new();
    let work = work(stop);
    tokio::pin!(work);
    tokio::select! {
        out = &mut work => Some(out),
        _ = shutdown => {
            info!("shutdown requested: finishing the batch in flight");
            switch.stop();
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut work).await {
                Ok(out) => Some(out),
                Err(_) => {
                    warn!(grace = ?SHUTDOWN_GRACE, "the batch in flight did not finish in time: abandoned uncommitted, its entries stay pending");
                    None
                }
            }
        }
    }
}
