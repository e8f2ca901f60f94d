//! Pruning of sweep trials: the rule a sweep may name to stop hopeless trials early.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a sweep prunes its trials, e.g. `{"rule": "median", "after_epochs": 2, "min_trials": 3}`.
///
/// The median rule: from epoch `after_epochs` on, after each committed epoch a running trial
/// whose best-so-far ranking metric is worse than the median of the other trials' best-so-far
/// values at the same epoch is stopped. At least `min_trials` other trials must have reached
/// that epoch; a trial is never pruned at its last epoch (there is nothing left to save).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruningSpec {
    /// The rule; only `median` exists.
    pub rule: PruningRule,
    /// The first epoch at which a trial may be pruned (1 or more).
    #[serde(default = "default_after")]
    pub after_epochs: u32,
    /// Other trials that must have reached the epoch before the median means anything.
    #[serde(default = "default_min_trials")]
    pub min_trials: u32,
}

/// A pruning rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PruningRule {
    /// Worse than the median of the other trials at the same epoch.
    Median,
}

fn default_after() -> u32 {
    1
}
fn default_min_trials() -> u32 {
    2
}

impl PruningSpec {
    /// Checks the bounds; errors name `pruning.<field>`.
    pub fn validate(&self) -> Result<()> {
        if !(1..=10_000).contains(&self.after_epochs) {
            return Err(Error::invalid(
                "pruning.after_epochs",
                format!("{}; valid: 1 to 10000", self.after_epochs),
            ));
        }
        if !(1..=1000).contains(&self.min_trials) {
            return Err(Error::invalid(
                "pruning.min_trials",
                format!("{}; valid: 1 to 1000", self.min_trials),
            ));
        }
        Ok(())
    }
}
