//! The median pruning rule over stored epochs (see [`PruningSpec`]).

use super::{best_epoch, better, metric_value};
use crate::domain::{Goal, PruningRule, PruningSpec, RankMetric};
use crate::store::EpochRow;

/// The best value of `metric` over epochs 1..=`epoch`; a run with no finite value there counts
/// as the worst possible.
fn best_so_far(epochs: &[EpochRow], epoch: i64, metric: RankMetric, goal: Goal) -> f64 {
    let upto: Vec<EpochRow> = epochs
        .iter()
        .filter(|e| e.epoch <= epoch)
        .cloned()
        .collect();
    best_epoch(&upto, metric, goal)
        .and_then(|e| metric_value(e, metric))
        .unwrap_or(match goal {
            Goal::Max => f64::NEG_INFINITY,
            Goal::Min => f64::INFINITY,
        })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Whether a trial that just committed `epoch` (its epochs so far in `own`) should be pruned,
/// given the epochs of the sweep's other trials; the reason when it should.
///
/// Only other trials that have reached `epoch` count, each with its best-so-far value there.
/// A trial is pruned when its own best-so-far is strictly worse than their median, from
/// `after_epochs` on and before `epochs_total` (pruning at the last epoch would save nothing).
pub fn prune_verdict(
    rule: &PruningSpec,
    metric: RankMetric,
    goal: Goal,
    epoch: i64,
    epochs_total: i64,
    own: &[EpochRow],
    others: &[Vec<EpochRow>],
) -> Option<String> {
    let PruningRule::Median = rule.rule;
    if epoch < i64::from(rule.after_epochs) || epoch >= epochs_total {
        return None;
    }
    let values: Vec<f64> = others
        .iter()
        .filter(|epochs| epochs.iter().any(|e| e.epoch == epoch))
        .map(|epochs| best_so_far(epochs, epoch, metric, goal))
        .collect();
    if values.len() < rule.min_trials as usize {
        return None;
    }
    let count = values.len();
    let median = median(values);
    let mine = best_so_far(own, epoch, metric, goal);
    if !better(median, mine, goal) {
        return None;
    }
    let side = match goal {
        Goal::Max => "below",
        Goal::Min => "above",
    };
    Some(format!(
        "pruned at epoch {epoch}: best {} so far {mine:.4} is {side} the median {median:.4} of {count} other trials",
        metric.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::epoch;

    fn rule(after: u32, min: u32) -> PruningSpec {
        PruningSpec {
            rule: PruningRule::Median,
            after_epochs: after,
            min_trials: min,
        }
    }

    fn run(accs: &[f64]) -> Vec<EpochRow> {
        accs.iter()
            .enumerate()
            .map(|(i, &acc)| epoch(i as i64 + 1, 1.0, 1.0, acc))
            .collect()
    }

    #[test]
    fn a_trial_below_the_median_of_the_others_is_pruned_with_the_evidence() {
        let others = vec![run(&[0.7, 0.8]), run(&[0.6, 0.9]), run(&[0.5, 0.7])];
        let reason = prune_verdict(
            &rule(2, 3),
            RankMetric::ValAcc,
            Goal::Max,
            2,
            5,
            &run(&[0.2, 0.3]),
            &others,
        )
        .unwrap();
        assert!(reason.contains("pruned at epoch 2"), "{reason}");
        assert!(
            reason.contains("0.3000 is below the median 0.8000 of 3"),
            "{reason}"
        );
    }

    #[test]
    fn a_trial_at_or_above_the_median_is_kept() {
        let others = vec![run(&[0.7, 0.8]), run(&[0.6, 0.9])];
        let verdict = prune_verdict(
            &rule(1, 2),
            RankMetric::ValAcc,
            Goal::Max,
            2,
            5,
            &run(&[0.86, 0.5]),
            &others,
        );
        assert_eq!(
            verdict, None,
            "best so far (0.86) counts, not the last epoch"
        );
    }

    #[test]
    fn nothing_is_pruned_too_early_with_too_few_trials_or_at_the_last_epoch() {
        let others = vec![run(&[0.9, 0.9]), run(&[0.9, 0.9]), run(&[0.9])];
        let own = run(&[0.1, 0.1]);
        let judge = |r: PruningSpec, epoch, total| {
            prune_verdict(
                &r,
                RankMetric::ValAcc,
                Goal::Max,
                epoch,
                total,
                &own,
                &others,
            )
        };
        assert_eq!(judge(rule(3, 1), 2, 5), None, "before after_epochs");
        assert_eq!(
            judge(rule(1, 3), 2, 5),
            None,
            "only two others reached epoch 2"
        );
        assert!(
            judge(rule(1, 3), 1, 5).is_some(),
            "three others reached epoch 1"
        );
        assert_eq!(judge(rule(1, 1), 2, 2), None, "the last epoch");
    }

    #[test]
    fn for_a_loss_higher_is_worse_and_a_diverged_trial_is_the_worst() {
        let others = vec![run(&[0.5]), run(&[0.5])];
        let mut diverged = run(&[0.1]);
        diverged[0].val_loss = f64::NAN;
        let reason = prune_verdict(
            &rule(1, 2),
            RankMetric::ValLoss,
            Goal::Min,
            1,
            3,
            &diverged,
            &others,
        )
        .unwrap();
        assert!(reason.contains("above the median"), "{reason}");
    }
}
