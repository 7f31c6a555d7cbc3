//! Waits of one kind that poll at the same moment share one call: Terraform applies the
//! resources of a wave in parallel (two replicas launched together, their segments created
//! together), and each of their waiters would otherwise describe its own instance or volume.
//!
//! An operation that will wait (a launch, a volume create) says so first ([`Coalescer::expect`]).
//! A poll opens a batch, or joins the open one; the batch closes as soon as every operation
//! that said it will wait has joined it, and at the latest when the gather window has passed
//! since it opened: a lone wait polls at once, as before, and the waits of one wave share one
//! describe call for all the batch's ids. A batch of one id, and a batch whose shared call
//! fails (one id not found makes EC2 refuse the whole call), answer nothing: each member then
//! makes its own call, exactly the call it made before batching, so errors are reported per
//! object as they always were.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OnceCell};
use tokio::time::Instant;

use super::error::AwsError;

/// The longest a batch waits for the other operations that said they will wait. EC2 never
/// reports an instance running, or a volume available or attached, within this time of the
/// call that asked for it, so on AWS a first poll delayed by it loses nothing.
pub const POLL_GATHER: Duration = Duration::from_millis(50);

struct Batch<T> {
    closes_at: Instant,
    ids: Mutex<BTreeSet<String>>,
    /// Polls that joined (two waits of one id count twice).
    members: AtomicUsize,
    joined: Notify,
    answer: OnceCell<Option<HashMap<String, T>>>,
}

/// The batches of one kind of poll (instances, or volumes) in one region.
pub struct Coalescer<T> {
    window: Duration,
    open: Mutex<Option<Arc<Batch<T>>>>,
    /// Operations that said they will wait ([`Coalescer::expect`]) and have not finished.
    expected: Pending,
}

/// Operations that said they are coming (to poll, to edit a record) and have not finished,
/// so that work shared with them can wait for them.
#[derive(Debug, Default)]
pub struct Pending(Arc<AtomicUsize>);

impl Pending {
    /// Counts one more operation until the returned guard is dropped.
    pub fn enter(&self) -> Expected {
        self.0.fetch_add(1, Ordering::SeqCst);
        Expected(self.0.clone())
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Held by an operation that said it is coming ([`Pending::enter`]), for example one that
/// will poll (from before its create call until its wait ends): a batch waits for it, within
/// the gather window.
#[derive(Debug)]
pub struct Expected(Arc<AtomicUsize>);

impl Drop for Expected {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<T> std::fmt::Debug for Coalescer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("window", &self.window)
            .finish()
    }
}

impl<T: Clone> Coalescer<T> {
    pub fn new(window: Duration) -> Self {
        Coalescer {
            window,
            open: Mutex::new(None),
            expected: Pending::default(),
        }
    }

    /// Says that this operation will poll soon; the batches wait for it while the guard lives.
    pub fn expect(&self) -> Expected {
        self.expected.enter()
    }

    /// True when every operation that said it will poll has joined `batch`.
    fn complete(&self, batch: &Batch<T>) -> bool {
        batch.members.load(Ordering::SeqCst) >= self.expected.count()
    }

    /// The batch to join for `id`: the open one, or a new one.
    fn join(&self, id: &str) -> Arc<Batch<T>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = open.as_ref()
            && Instant::now() < b.closes_at
        {
            // Added under the `open` lock: the batch's call, which closes the batch under
            // the same lock before it reads the ids, sees this one.
            b.ids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.to_string());
            b.members.fetch_add(1, Ordering::SeqCst);
            b.joined.notify_waiters();
            return b.clone();
        }
        let b = Arc::new(Batch {
            closes_at: Instant::now() + self.window,
            ids: Mutex::new(BTreeSet::from([id.to_string()])),
            members: AtomicUsize::new(1),
            joined: Notify::new(),
            answer: OnceCell::new(),
        });
        *open = Some(b.clone());
        b
    }

    fn close(&self, batch: &Arc<Batch<T>>) -> Vec<String> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.as_ref().is_some_and(|b| Arc::ptr_eq(b, batch)) {
            *open = None;
        }
        drop(open);
        batch
            .ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// `id` as the batch's shared call (`many`, given every id of the batch) answered it, or
    /// as `one` (the single-object call) answers it when the batch was `id` alone, its shared
    /// call failed, or its answer lacks `id`. A zero window: `one` at once.
    pub async fn poll<M, MFut, O, OFut>(&self, id: &str, many: M, one: O) -> Result<T, AwsError>
    where
        M: FnOnce(Vec<String>) -> MFut,
        MFut: Future<Output = Result<HashMap<String, T>, AwsError>>,
        O: FnOnce() -> OFut,
        OFut: Future<Output = Result<T, AwsError>>,
    {
        if self.window.is_zero() {
            return one().await;
        }
        let batch = self.join(id);
        // Whoever runs first makes the batch's call; a member that goes away mid-call (its
        // operation dropped) leaves it to the next member.
        let answer = batch
            .answer
            .get_or_init(|| async {
                loop {
                    let joined = batch.joined.notified();
                    tokio::pin!(joined);
                    // Registered before the check: a join right after it still wakes us.
                    joined.as_mut().enable();
                    let left = batch.closes_at.saturating_duration_since(Instant::now());
                    if self.complete(&batch) || left.is_zero() {
                        break;
                    }
                    tokio::select! {
                        _ = joined => {}
                        // Cancelled: the call below is refused by the cancelled operation.
                        _ = crate::cancel::sleep(left) => {}
                    }
                }
                let ids = self.close(&batch);
                if ids.len() < 2 {
                    return None;
                }
                match many(ids).await {
                    Ok(m) => Some(m),
                    Err(e) => {
                        tracing::debug!(error = %e, "a shared poll failed: each waiter polls alone");
                        None
                    }
                }
            })
            .await;
        match answer.as_ref().and_then(|m| m.get(id)) {
            Some(v) => Ok(v.clone()),
            None => one().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn answer(ids: &[String]) -> HashMap<String, String> {
        ids.iter().map(|i| (i.clone(), format!("{i}!"))).collect()
    }

    #[tokio::test]
    async fn polls_within_the_window_share_one_call() {
        let c: Coalescer<String> = Coalescer::new(Duration::from_millis(40));
        let many_calls = AtomicU32::new(0);
        let one_calls = AtomicU32::new(0);
        let poll = |id: &'static str| {
            let (c, many_calls, one_calls) = (&c, &many_calls, &one_calls);
            async move {
                c.poll(
                    id,
                    |ids| async move {
                        many_calls.fetch_add(1, Ordering::SeqCst);
                        Ok(answer(&ids))
                    },
                    || async move {
                        one_calls.fetch_add(1, Ordering::SeqCst);
                        Ok(format!("{id}?"))
                    },
                )
                .await
            }
        };
        // Three operations said they will poll, one of them later than the others.
        let guards = [c.expect(), c.expect(), c.expect()];
        let late = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            poll("b").await
        };
        let (a, b, a2) = tokio::join!(poll("a"), late, poll("a"));
        assert_eq!(a.unwrap(), "a!");
        assert_eq!(a2.unwrap(), "a!");
        assert_eq!(b.unwrap(), "b!");
        assert_eq!(many_calls.load(Ordering::SeqCst), 1);
        assert_eq!(one_calls.load(Ordering::SeqCst), 0);

        // Expected by nobody else: the single call, as without batching.
        drop(guards);
        assert_eq!(poll("c").await.unwrap(), "c?");
        assert_eq!(many_calls.load(Ordering::SeqCst), 1);
        assert_eq!(one_calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_batch_closes_once_every_expected_operation_joined() {
        let c: Coalescer<String> = Coalescer::new(Duration::from_secs(30));
        let many_calls = AtomicU32::new(0);
        let poll = |id: &'static str| {
            let (c, many_calls) = (&c, &many_calls);
            async move {
                c.poll(
                    id,
                    |ids| async move {
                        many_calls.fetch_add(1, Ordering::SeqCst);
                        Ok(answer(&ids))
                    },
                    || async move { Ok(format!("{id}?")) },
                )
                .await
            }
        };
        let started = std::time::Instant::now();
        // Nothing expected: a lone poll does not wait for the (long) window.
        assert_eq!(poll("a").await.unwrap(), "a?");
        // Two operations expected: the batch closes when the second joins, long before 30 s.
        let (ga, gb) = (c.expect(), c.expect());
        let late = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            poll("b").await
        };
        let (a, b) = tokio::join!(poll("a"), late);
        assert_eq!(
            (a.unwrap(), b.unwrap()),
            ("a!".to_string(), "b!".to_string())
        );
        assert_eq!(many_calls.load(Ordering::SeqCst), 1);
        // One of them done: the other polls alone, at once.
        drop(gb);
        assert_eq!(poll("a").await.unwrap(), "a?");
        drop(ga);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_failed_shared_call_leaves_each_member_to_its_own_call() {
        let c: Coalescer<String> = Coalescer::new(Duration::from_millis(20));
        let poll = |id: &'static str| {
            let c = &c;
            async move {
                c.poll(
                    id,
                    |_| async {
                        Err(AwsError::api(
                            "ec2:DescribeVolumes",
                            "volumes",
                            "InvalidVolume.NotFound",
                            "one of them is gone",
                        ))
                    },
                    || async move {
                        if id == "gone" {
                            Err(AwsError::api(
                                "ec2:DescribeVolumes",
                                id,
                                "InvalidVolume.NotFound",
                                "gone",
                            ))
                        } else {
                            Ok(format!("{id}?"))
                        }
                    },
                )
                .await
            }
        };
        let _guards = [c.expect(), c.expect()];
        let (a, gone) = tokio::join!(poll("a"), poll("gone"));
        assert_eq!(a.unwrap(), "a?");
        assert!(gone.unwrap_err().is_not_found());
    }
}
