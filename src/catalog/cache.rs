//! The byte-bounded cache of loaded tables, and loading through it.

use std::sync::{Arc, Mutex};

use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use super::Catalog;
use crate::domain::DatasetId;
use crate::error::{Error, Result};
use data::{self as dataset, Table};

impl Catalog {
    /// The rows of a data set, from memory or its files. Concurrent loads of one data set
    /// read its files once.
    pub async fn load(&self, id: DatasetId) -> Result<Arc<Table>> {
        if let Some(table) = self.cache.get(&id).and_then(|slot| slot.table()) {
            return Ok(table);
        }
        let folder = self.dir.join(id.to_string());
        let cache = self.cache.clone();
        tokio::task::spawn_blocking(move || {
            let mut loaded = None;
            let slot = cache
                .try_get_with(id, || {
                    let table = Arc::new(dataset::load(&folder).map_err(Error::from)?);
                    loaded = Some(Arc::clone(&table));
                    Ok::<_, Error>(Slot::new(table))
                })
                .map_err(|err| match &*err {
                    Error::Internal(message) => Error::Internal(message.clone()),
                    other => Error::Internal(other.to_string()),
                })?;
            let table = loaded.or_else(|| slot.table());
            cache.run_pending_tasks();
            match table {
                Some(table) => Ok(table),
                // Evicted between another thread's load and this look: read it again.
                None => Ok(dataset::load(&folder).map(Arc::new)?),
            }
        })
        .await
        .map_err(|err| Error::internal("loading a data set", err))?
    }

    /// The bytes of loaded data sets held in memory now (after pending evictions).
    pub fn cached_bytes(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size() * 1024
    }
}

/// A cached table. The cache points at the table through this slot, and evicting an entry
/// empties its slot: moka frees its own entries later (epoch-based reclamation, on later cache
/// traffic), which for a table of a gigabyte would keep that memory long past its eviction.
#[derive(Clone)]
pub(super) struct Slot {
    table: Arc<Mutex<Option<Arc<Table>>>>,
    bytes: u64,
}

impl Slot {
    pub(super) fn new(table: Arc<Table>) -> Self {
        Slot {
            bytes: table.memory_bytes(),
            table: Arc::new(Mutex::new(Some(table))),
        }
    }

    /// The table, unless it has been evicted.
    fn table(&self) -> Option<Arc<Table>> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn clear(&self) {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
    }
}

/// A cache of tables weighing each by its [`Table::memory_bytes`], in KiB (a weight is a
/// `u32`), holding at most `bytes`, dropping the least recently used first. A table larger
/// than the whole budget is used but not kept.
pub(super) fn table_cache(bytes: u64) -> Cache<DatasetId, Slot> {
    Cache::builder()
        .max_capacity(bytes / 1024)
        .weigher(|_, slot: &Slot| u32::try_from(slot.bytes.div_ceil(1024)).unwrap_or(u32::MAX))
        .eviction_policy(EvictionPolicy::lru())
        .eviction_listener(|_, slot: Slot, _| slot.clear())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use data::LabelKind;

    /// A table of `rows` rows of 100 features: 404 bytes a row.
    fn table(rows: usize) -> Arc<Table> {
        Arc::new(Table {
            feature_names: (0..100).map(|i| format!("f{i}")).collect(),
            features: vec![0.5; rows * 100],
            labels: vec![0; rows],
            classes: vec!["a".into(), "b".into()],
            label_kind: LabelKind::String,
            splits: None,
            image_shape: None,
            pixel_max: 1.0,
        })
    }

    #[test]
    fn a_table_weighs_what_its_numbers_and_names_take() {
        let t = table(1000);
        let numbers = 1000 * 100 * 4 + 1000 * 4;
        assert!(t.memory_bytes() >= numbers as u64);
        assert!(
            t.memory_bytes() < numbers as u64 + 10_000,
            "{}",
            t.memory_bytes()
        );
    }

    #[test]
    fn the_table_cache_stays_within_its_budget_dropping_the_least_recently_used() {
        // Each table is about 400 KB; the budget holds two of them, not three.
        let cache = table_cache(1_000_000);
        let (a, b, c) = (DatasetId::new(), DatasetId::new(), DatasetId::new());
        cache.insert(a, Slot::new(table(1000)));
        let b_slot = Slot::new(table(1000));
        cache.insert(b, b_slot.clone());
        cache.run_pending_tasks();
        assert!(
            cache.get(&a).is_some(),
            "a is used again, so b is now the oldest"
        );
        cache.run_pending_tasks();
        cache.insert(c, Slot::new(table(1000)));
        cache.run_pending_tasks();
        assert!(cache.contains_key(&a));
        assert!(!cache.contains_key(&b));
        assert!(
            b_slot.table().is_none(),
            "an evicted table is let go at once"
        );
        assert!(cache.contains_key(&c));
        assert!(cache.weighted_size() * 1024 <= 1_000_000 + 2048);

        // A table larger than the whole budget is not kept at all.
        let big = DatasetId::new();
        let held = table(3000);
        cache.insert(big, Slot::new(Arc::clone(&held)));
        cache.run_pending_tasks();
        assert!(!cache.contains_key(&big));
        assert_eq!(Arc::strong_count(&held), 1, "only its user holds it");
        assert!(cache.weighted_size() * 1024 <= 1_000_000 + 2048);

        let none = table_cache(0);
        none.insert(a, Slot::new(table(1)));
        none.run_pending_tasks();
        assert_eq!(none.entry_count(), 0);
    }
}
