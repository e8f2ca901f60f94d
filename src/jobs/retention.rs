use std::collections::BTreeSet;

/// The checkpoint epochs to delete: everything except the latest, the best, and the most
/// recent `keep_last` of the epochs that are multiples of `every`.
pub fn epochs_to_delete(epochs: &[i64], best: Option<i64>, every: u32, keep_last: u32) -> Vec<i64> {
    let Some(&latest) = epochs.iter().max() else {
        return Vec::new();
    };
    let mut keep: BTreeSet<i64> = BTreeSet::from([latest]);
    keep.extend(best);
    let every = i64::from(every.max(1));
    let mut periodic: Vec<i64> = epochs.iter().copied().filter(|e| e % every == 0).collect();
    periodic.sort_unstable();
    keep.extend(periodic.iter().rev().take(keep_last as usize));
    epochs
        .iter()
        .copied()
        .filter(|e| !keep.contains(e))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_the_best_and_the_last_few_periodic_ones_are_kept() {
        let epochs: Vec<i64> = (1..=10).collect();
        assert_eq!(
            epochs_to_delete(&epochs, Some(2), 1, 3),
            vec![1, 3, 4, 5, 6, 7]
        );
        assert_eq!(
            epochs_to_delete(&epochs, Some(3), 4, 1),
            vec![1, 2, 4, 5, 6, 7, 9]
        );
    }

    #[test]
    fn keep_last_zero_keeps_only_the_best_and_the_latest() {
        let epochs: Vec<i64> = (1..=4).collect();
        assert_eq!(epochs_to_delete(&epochs, Some(1), 1, 0), vec![2, 3]);
        assert!(epochs_to_delete(&[], None, 1, 0).is_empty());
    }
}
