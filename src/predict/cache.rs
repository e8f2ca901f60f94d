//! What the hot path remembers: loaded models within a memory budget (least recently used
//! first out), and what each name, alias or finished job resolved to, so that a request
//! touches no database once its model is warm.

use std::sync::Arc;

use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use super::model::{LoadedModel, ModelKey};
use crate::domain::JobId;

/// What a request's model names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Selector {
    /// A job's checkpoint: `best`, `latest` or an epoch, as the request chose.
    Job(JobId, String),
    /// A name alone: its `production` alias, else its newest version.
    Name(String),
    /// `name@alias`.
    Alias(String, String),
    /// `name/versions/N`.
    Version(String, i64),
}

impl Selector {
    /// The model name it concerns, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Selector::Job(..) => None,
            Selector::Name(n) | Selector::Alias(n, _) | Selector::Version(n, _) => Some(n),
        }
    }
}

/// The loaded models and the resolutions.
pub struct ModelCache {
    models: Cache<ModelKey, Arc<LoadedModel>>,
    resolved: Cache<Selector, ModelKey>,
}

impl ModelCache {
    /// A cache holding at most `budget_bytes` of weights.
    pub fn new(budget_bytes: u64) -> Self {
        let models = Cache::builder()
            // Weights in KiB, so that a weight fits in u32 up to 4 TiB.
            .weigher(|_, model: &Arc<LoadedModel>| {
                (model.bytes / 1024).clamp(1, u64::from(u32::MAX)) as u32
            })
            .max_capacity((budget_bytes / 1024).max(1))
            .eviction_policy(EvictionPolicy::lru())
            .eviction_listener(|_, _, cause| {
                if cause == RemovalCause::Size {
                    metrics::counter!(crate::prometheus::MODEL_EVICTIONS).increment(1);
                }
            })
            .build();
        let resolved = Cache::builder()
            .max_capacity(100_000)
            .support_invalidation_closures()
            .build();
        ModelCache { models, resolved }
    }

    /// A loaded model, marked as most recently used.
    pub fn get(&self, key: &ModelKey) -> Option<Arc<LoadedModel>> {
        let model = self.models.get(key);
        if model.is_some() {
            metrics::counter!(crate::prometheus::MODEL_CACHE_HITS).increment(1);
        }
        model
    }

    /// Adds a loaded model, evicting the least recently used beyond the budget.
    pub fn insert(&self, key: ModelKey, model: Arc<LoadedModel>) {
        metrics::counter!(crate::prometheus::MODEL_LOADS).increment(1);
        self.models.insert(key, model);
    }

    /// Whether a model is loaded (and so warm).
    pub fn contains(&self, key: &ModelKey) -> bool {
        self.models.contains_key(key)
    }

    /// How many models are loaded.
    pub fn len(&self) -> usize {
        self.models.run_pending_tasks();
        self.models.entry_count() as usize
    }

    /// Drops a model.
    pub fn remove(&self, key: &ModelKey) {
        self.models.invalidate(key);
    }

    /// What `selector` resolved to last.
    pub fn resolved(&self, selector: &Selector) -> Option<ModelKey> {
        self.resolved.get(selector)
    }

    /// Remembers what `selector` resolves to.
    pub fn remember(&self, selector: Selector, key: ModelKey) {
        self.resolved.insert(selector, key);
    }

    /// Forgets every resolution of model `name` (an alias moved, a version came or went).
    pub fn forget_name(&self, name: &str) {
        let name = name.to_string();
        let _ = self
            .resolved
            .invalidate_entries_if(move |selector, _| selector.name() == Some(name.as_str()));
    }

    /// Drops every model and resolution of a job (it was deleted).
    pub fn remove_job(&self, job: JobId) {
        let _ = self.resolved.invalidate_entries_if(
            move |selector, _| matches!(selector, Selector::Job(id, _) if *id == job),
        );
        let keys: Vec<ModelKey> = self
            .models
            .iter()
            .filter(|(key, _)| matches!(key.as_ref(), ModelKey::Checkpoint(id, _) if *id == job))
            .map(|(key, _)| (*key).clone())
            .collect();
        for key in keys {
            self.models.invalidate(&key);
        }
    }
}
