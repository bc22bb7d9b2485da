//! Keys as recently read, by their hash. A product's backend (and an LLM client) sends one key
//! with every request, and reading it from the database each time halved the customer routes'
//! throughput (the spend benchmark's `--route customer`) and was a third of a gateway call's
//! reads. An entry lives `TTL`; revoking a key forgets it at once on the replica that revoked
//! it, and another replica stops taking it within `TTL`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What a cache keeps of a key.
pub trait CachedKey: Clone {
    fn id(&self) -> Uuid;
    fn hash(&self) -> &str;
    fn set_last_used(&mut self, at: DateTime<Utc>);
}

pub struct KeyCache<K>(Arc<Mutex<HashMap<String, (K, Instant)>>>);

impl<K> Default for KeyCache<K> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<K> Clone for KeyCache<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K: CachedKey> KeyCache<K> {
    pub const TTL: Duration = Duration::from_secs(5);
    const MAX: usize = 10_000;

    /// The live key with this hash, if read less than `TTL` ago.
    pub fn get(&self, hash: &str) -> Option<K> {
        let keys = self.0.lock().ok()?;
        keys.get(hash).filter(|(_, read)| read.elapsed() < Self::TTL).map(|(key, _)| key.clone())
    }

    /// Remembers a key just read from the database.
    pub fn remember(&self, key: &K) {
        if let Ok(mut keys) = self.0.lock() {
            if keys.len() >= Self::MAX {
                keys.retain(|_, (_, read)| read.elapsed() < Self::TTL);
            }
            keys.insert(key.hash().to_owned(), (key.clone(), Instant::now()));
        }
    }

    /// Notes that the key's use was recorded at `at`, so that its next uses do not record it
    /// again within the minute.
    pub fn used(&self, hash: &str, at: DateTime<Utc>) {
        if let Ok(mut keys) = self.0.lock()
            && let Some((key, _)) = keys.get_mut(hash)
        {
            key.set_last_used(at);
        }
    }

    /// Forgets a revoked key.
    pub fn forget(&self, id: Uuid) {
        if let Ok(mut keys) = self.0.lock() {
            keys.retain(|_, (key, _)| key.id() != id);
        }
    }
}
