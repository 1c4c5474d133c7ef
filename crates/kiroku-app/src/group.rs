//! Group commit: concurrent requests queue their work and wait; whoever
//! holds the leader lock takes everything queued so far (up to a size) and
//! commits it in one transaction, so that a burst of requests pays for one
//! fsync, not one each. Every request is answered only after its work is
//! committed.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::{AppError, Result};

/// Work that can share a commit: how much of a batch it takes.
pub(crate) trait Grouped: Send + 'static {
    fn weight(&self) -> usize;
}

/// The queue of work waiting for a commit, and the lock its leader holds.
pub(crate) struct GroupCommit<J> {
    pending: Mutex<VecDeque<J>>,
    leader: tokio::sync::Mutex<()>,
    /// The most weight one transaction takes; more waits for the next.
    max_weight: usize,
}

impl<J: Grouped> GroupCommit<J> {
    pub(crate) fn new(max_weight: usize) -> Self {
        GroupCommit {
            pending: Mutex::default(),
            leader: tokio::sync::Mutex::new(()),
            max_weight,
        }
    }

    /// Whole jobs, oldest first, up to the batch size (at least one job).
    fn take_batch(&self) -> Vec<J> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = Vec::new();
        let mut weight = 0;
        while let Some(job) = pending.front() {
            if !batch.is_empty() && weight + job.weight() > self.max_weight {
                break;
            }
            weight += job.weight();
            batch.extend(pending.pop_front());
        }
        batch
    }

    /// Queues `job` and returns once a commit has answered it on `answer`.
    /// `commit` takes a batch and must answer every job in it.
    pub(crate) async fn submit<R, F>(
        &self,
        job: J,
        mut answer: oneshot::Receiver<Result<R>>,
        commit: impl Fn(Vec<J>) -> F,
    ) -> Result<R>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(job);
        let abandoned = || AppError::Internal("a grouped commit was abandoned".into());
        loop {
            let leader = self.leader.lock().await;
            match answer.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Closed) => return Err(abandoned()),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch = self.take_batch();
            if batch.is_empty() {
                // Our job is in a batch still committing.
                drop(leader);
                return answer.await.map_err(|_| abandoned())?;
            }
            // Spawned, so that a caller going away mid-commit cannot abandon
            // the other callers' work with it.
            let _ = tokio::spawn(commit(batch)).await;
            drop(leader);
        }
    }
}

/// A copy of an error for each request of a failed batch.
pub(crate) fn replicate(e: &AppError) -> AppError {
    match e {
        AppError::Unavailable(m) => AppError::Unavailable(m.clone()),
        AppError::DiskFull(m) => AppError::DiskFull(m.clone()),
        other => AppError::Internal(other.to_string()),
    }
}
