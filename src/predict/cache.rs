use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::LoadedModel;
use crate::domain::JobId;
use engine::checkpoint::FileStamp;

type Key = (JobId, i64);
type Entry = (Key, Arc<LoadedModel>, FileStamp);

/// A small least-recently-used cache of loaded checkpoints, each with the stamp of the file
/// it was loaded from, so that a file changed on disk since is not served from memory.
pub struct ModelCache {
    capacity: usize,
    entries: Mutex<VecDeque<Entry>>,
}

impl ModelCache {
    pub fn new(capacity: usize) -> Self {
        ModelCache {
            capacity: capacity.max(1),
            entries: Mutex::new(VecDeque::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        self.entries
            .lock()
            .expect("model cache lock poisoned; this is a bug")
    }

    /// The model, marked as most recently used, if it was loaded from a file with this
    /// stamp; an entry from another version of the file is dropped.
    pub fn get(&self, key: &Key, stamp: &FileStamp) -> Option<Arc<LoadedModel>> {
        let mut entries = self.entries();
        let index = entries.iter().position(|(k, _, _)| k == key)?;
        let entry = entries.remove(index)?;
        if entry.2 != *stamp {
            return None;
        }
        let model = Arc::clone(&entry.1);
        entries.push_front(entry);
        metrics::counter!(crate::prometheus::MODEL_CACHE_HITS).increment(1);
        Some(model)
    }

    /// Adds a model, evicting the least recently used beyond capacity.
    pub fn insert(&self, key: Key, model: Arc<LoadedModel>, stamp: FileStamp) {
        let mut entries = self.entries();
        entries.retain(|(k, _, _)| *k != key);
        entries.push_front((key, model, stamp));
        let evicted = entries.len().saturating_sub(self.capacity);
        entries.truncate(self.capacity);
        metrics::counter!(crate::prometheus::MODEL_LOADS).increment(1);
        metrics::counter!(crate::prometheus::MODEL_EVICTIONS).increment(evicted as u64);
    }

    /// How many models are loaded.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Drops a model (its file is gone).
    pub fn remove(&self, key: &Key) {
        self.entries().retain(|(k, _, _)| k != key);
    }

    /// Drops every model of a job (it was deleted).
    pub fn remove_job(&self, job: JobId) {
        self.entries().retain(|((id, _), _, _)| *id != job);
    }
}
