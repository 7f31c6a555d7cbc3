//! Answers shared between the resources of one provider process, so a wave of resources that
//! all need the same read (ten replicas planning against one cluster, each checking its
//! subnet) makes it once.
//!
//! Concurrent callers of one key wait for the one call in flight and take its answer; an
//! answer is kept for the memo's time to live (`None`: the process's life, for what cannot
//! change, such as a subnet's VPC). Errors are never kept: the next caller asks again.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Slot<V> = Arc<tokio::sync::Mutex<Option<(Instant, V)>>>;

pub struct Memo<K, V> {
    ttl: Option<Duration>,
    // The outer lock guards only the map; a fetch runs under the key's own async lock.
    slots: Mutex<HashMap<K, Slot<V>>>,
}

impl<K, V> std::fmt::Debug for Memo<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo").field("ttl", &self.ttl).finish()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Memo<K, V> {
    pub fn new(ttl: Option<Duration>) -> Self {
        Memo {
            ttl,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, key: &K) -> Slot<V> {
        match self.slots.lock() {
            Ok(mut m) => m.entry(key.clone()).or_default().clone(),
            // A poisoned map only loses sharing: a private slot still answers.
            Err(_) => Slot::default(),
        }
    }

    fn fresh(&self, at: Instant) -> bool {
        self.ttl.is_none_or(|t| at.elapsed() < t)
    }

    /// The kept answer for `key`, or `fetch`'s (kept when it is `Ok`).
    pub async fn get_or_try<E, F, Fut>(&self, key: &K, fetch: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let slot = self.slot(key);
        let mut g = slot.lock().await;
        if let Some((at, v)) = g.as_ref()
            && self.fresh(*at)
        {
            return Ok(v.clone());
        }
        let v = fetch().await?;
        *g = Some((Instant::now(), v.clone()));
        Ok(v)
    }

    /// Keeps `v` as the answer for `key` (what a create or update just read back).
    pub async fn put(&self, key: &K, v: V) {
        let slot = self.slot(key);
        *slot.lock().await = Some((Instant::now(), v));
    }

    /// Drops the answer for `key`: the object changed.
    pub fn forget(&self, key: &K) {
        if let Ok(mut m) = self.slots.lock() {
            m.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch_and_errors_are_not_kept() {
        let m: Memo<String, u32> = Memo::new(None);
        let calls = AtomicU32::new(0);
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, ()>(7)
        };
        let k = "a".to_string();
        let (a, b, c) = tokio::join!(
            m.get_or_try(&k, fetch),
            m.get_or_try(&k, fetch),
            m.get_or_try(&k, fetch)
        );
        assert_eq!((a, b, c), (Ok(7), Ok(7), Ok(7)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let e: Result<u32, &str> = m.get_or_try(&"b".to_string(), || async { Err("x") }).await;
        assert_eq!(e, Err("x"));
        let ok: Result<u32, &str> = m.get_or_try(&"b".to_string(), || async { Ok(2) }).await;
        assert_eq!(ok, Ok(2));

        m.forget(&k);
        let again: Result<u32, ()> = m.get_or_try(&k, || async { Ok(8) }).await;
        assert_eq!(again, Ok(8));
    }

    #[tokio::test]
    async fn answers_expire_after_their_time_to_live() {
        let m: Memo<u8, u32> = Memo::new(Some(Duration::from_millis(30)));
        m.put(&1, 1).await;
        let kept: Result<u32, ()> = m.get_or_try(&1, || async { Ok(2) }).await;
        assert_eq!(kept, Ok(1));
        tokio::time::sleep(Duration::from_millis(40)).await;
        let fresh: Result<u32, ()> = m.get_or_try(&1, || async { Ok(3) }).await;
        assert_eq!(fresh, Ok(3));
    }
}
