//! Background tasks that end with their owner.

use tokio::task::{JoinError, JoinHandle};

/// A spawned task, aborted when the guard is dropped: however its owner's run ends (an
/// abandoned shutdown included), nothing it started keeps running.
#[derive(Debug)]
pub struct TaskGuard<T>(JoinHandle<T>);

impl<T: Send + 'static> TaskGuard<T> {
    pub fn spawn(task: impl std::future::Future<Output = T> + Send + 'static) -> TaskGuard<T> {
        TaskGuard(tokio::spawn(task))
    }

    /// Wait for the task to end on its own.
    pub async fn join(&mut self) -> Result<T, JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for TaskGuard<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
