//! Group commit: concurrent requests queue their work and wait; one
//! committer task takes everything queued so far (up to a size) and
//! commits it in one transaction, then the next batch, until the queue is
//! empty, so that a burst of requests pays for one fsync, not one each.
//! Every request is answered only after its work is committed.
//!
//! A request does nothing but queue its work, start the committer if none
//! is running, and wait for its answer: it is woken once, when answered,
//! rather than taking a turn at a leader's lock after every batch.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::{AppError, Result};

/// Work that can share a commit: how much of a batch it takes.
pub(crate) trait Grouped: Send + 'static {
    fn weight(&self) -> usize;
}

#[derive(Default)]
struct Queue<J> {
    jobs: VecDeque<J>,
    /// Whether a committer task is running; it clears this itself, under
    /// the same lock, when it finds the queue empty.
    committing: bool,
}

/// The queue of work waiting for a commit.
pub(crate) struct GroupCommit<J> {
    queue: Mutex<Queue<J>>,
    /// The most weight one transaction takes; more waits for the next.
    max_weight: usize,
}

impl<J: Grouped> GroupCommit<J> {
    pub(crate) fn new(max_weight: usize) -> Self {
        GroupCommit {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                committing: false,
            }),
            max_weight,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<J>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whole jobs, oldest first, up to the batch size (at least one job);
    /// none means the committer stops.
    fn take_batch(&self) -> Vec<J> {
        let mut queue = self.lock();
        let mut batch = Vec::new();
        let mut weight = 0;
        while let Some(job) = queue.jobs.front() {
            if !batch.is_empty() && weight + job.weight() > self.max_weight {
                break;
            }
            weight += job.weight();
            batch.extend(queue.jobs.pop_front());
        }
        if batch.is_empty() {
            queue.committing = false;
        }
        batch
    }

    /// Queues `job` and returns once a commit has answered it on `answer`.
    /// `committer` is called only when a committer task must start; the
    /// function it returns takes a batch and must answer every job in it.
    pub(crate) async fn submit<R, C, F>(
        self: &Arc<Self>,
        job: J,
        answer: oneshot::Receiver<Result<R>>,
        committer: impl FnOnce() -> C,
    ) -> Result<R>
    where
        C: Fn(Vec<J>) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let start = {
            let mut queue = self.lock();
            queue.jobs.push_back(job);
            !std::mem::replace(&mut queue.committing, true)
        };
        if start {
            let (this, commit) = (self.clone(), committer());
            tokio::spawn(async move {
                loop {
                    let batch = this.take_batch();
                    if batch.is_empty() {
                        return;
                    }
                    // A task of its own, so that a commit that panics drops
                    // only its batch's answers and the committer goes on.
                    let _ = tokio::spawn(commit(batch)).await;
                }
            });
        }
        answer
            .await
            .map_err(|_| AppError::Internal("a grouped commit was abandoned".into()))?
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
