//! Per-key async locks: one request at a time does a piece of work whose result the others then
//! find cached (a token per scope, a tag's revalidation).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Held while the work for one key is under way.
pub type Gate = Arc<tokio::sync::Mutex<()>>;

pub struct Gates<K> {
    map: Mutex<HashMap<K, Gate>>,
}

impl<K> Default for Gates<K> {
    fn default() -> Self {
        Gates {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash> Gates<K> {
    /// The gate of `key`: lock it, then look in the cache again before doing the work.
    pub fn gate(&self, key: K) -> Gate {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Gates nobody holds are dropped, so the map stays as small as the work in flight.
        map.retain(|_, g| Arc::strong_count(g) > 1);
        map.entry(key).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_key_and_idle_gates_are_dropped() {
        let gates = Gates::default();
        let a = gates.gate("a");
        let held = a.lock().await;
        assert!(gates.gate("a").try_lock().is_err(), "the same key waits");
        assert!(gates.gate("b").try_lock().is_ok(), "another key does not");
        drop(held);
        drop(a);
        gates.gate("c");
        assert_eq!(
            gates.map.lock().unwrap().len(),
            1,
            "only the gate just handed out"
        );
    }
}
