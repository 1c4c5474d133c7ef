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
    /// `commit` takes a copy of `context` and a batch, and must answer
    /// every job in the batch.
    pub(crate) async fn submit<R, T, F>(
        self: &Arc<Self>,
        job: J,
        answer: oneshot::Receiver<Result<R>>,
        context: &T,
        commit: impl Fn(T, Vec<J>) -> F + Send + 'static,
    ) -> Result<R>
    where
        T: Clone + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let start = {
            let mut queue = self.lock();
            queue.jobs.push_back(job);
            !std::mem::replace(&mut queue.committing, true)
        };
        if start {
            let (this, context) = (self.clone(), context.clone());
            tokio::spawn(async move {
                loop {
                    let batch = this.take_batch();
                    if batch.is_empty() {
                        return;
                    }
                    // A task of its own, so that a commit that panics drops
                    // only its batch's answers and the committer goes on.
                    let _ = tokio::spawn(commit(context.clone(), batch)).await;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    struct TestJob {
        weight: usize,
        fail: bool,
        reply: oneshot::Sender<Result<usize>>,
    }

    impl Grouped for TestJob {
        fn weight(&self) -> usize {
            self.weight
        }
    }

    const MAX_WEIGHT: usize = 10;

    /// Answers each job with its batch's weight, slowly enough that jobs
    /// pile up; panics on a batch holding a failing job.
    async fn commit(batch: Vec<TestJob>) {
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(!batch.iter().any(|job| job.fail), "a failing job");
        let weight = batch.iter().map(|job| job.weight).sum();
        for job in batch {
            let _ = job.reply.send(Ok(weight));
        }
    }

    async fn submit(group: &Arc<GroupCommit<TestJob>>, weight: usize, fail: bool) -> Result<usize> {
        let (reply, answer) = oneshot::channel();
        let job = TestJob {
            weight,
            fail,
            reply,
        };
        group
            .submit(job, answer, &(), |(), batch| commit(batch))
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_job_is_answered_in_batches_within_the_weight() {
        let group = Arc::new(GroupCommit::new(MAX_WEIGHT));
        let waits: Vec<_> = (0..300)
            .map(|n| {
                let group = group.clone();
                tokio::spawn(async move { submit(&group, 1 + n % 4, false).await })
            })
            .collect();
        let mut shared = 0;
        for wait in waits {
            let weight = wait.await.unwrap().unwrap();
            assert!(weight <= MAX_WEIGHT, "a batch of weight {weight}");
            shared += usize::from(weight > 4);
        }
        assert!(shared > 0, "no job shared a commit");
        // The committer stopped with the queue empty, and starts again.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!group.lock().committing);
        let again = tokio::time::timeout(Duration::from_secs(10), submit(&group, 11, false));
        assert_eq!(again.await.expect("no committer started").unwrap(), 11);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_that_panics_fails_only_its_batch() {
        let group = Arc::new(GroupCommit::new(MAX_WEIGHT));
        let failed = submit(&group, 1, true).await;
        assert!(matches!(failed, Err(AppError::Internal(_))), "{failed:?}");
        assert_eq!(submit(&group, 3, false).await.unwrap(), 3);
    }
}
