use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::LoadedModel;
use crate::domain::JobId;

type Key = (JobId, i64);

/// A small least-recently-used cache of loaded checkpoints.
pub struct ModelCache {
    capacity: usize,
    entries: Mutex<VecDeque<(Key, Arc<LoadedModel>)>>,
}

impl ModelCache {
    pub fn new(capacity: usize) -> Self {
        ModelCache {
            capacity: capacity.max(1),
            entries: Mutex::new(VecDeque::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, VecDeque<(Key, Arc<LoadedModel>)>> {
        self.entries
            .lock()
            .expect("model cache lock poisoned; this is a bug")
    }

    /// The model, marked as most recently used.
    pub fn get(&self, key: &Key) -> Option<Arc<LoadedModel>> {
        let mut entries = self.entries();
        let index = entries.iter().position(|(k, _)| k == key)?;
        let entry = entries.remove(index)?;
        let model = Arc::clone(&entry.1);
        entries.push_front(entry);
        Some(model)
    }

    /// Adds a model, evicting the least recently used beyond capacity.
    pub fn insert(&self, key: Key, model: Arc<LoadedModel>) {
        let mut entries = self.entries();
        entries.retain(|(k, _)| *k != key);
        entries.push_front((key, model));
        entries.truncate(self.capacity);
    }
}
