//! Who is calling: the token's scopes, the owner its resources belong to, and its quotas.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Everything, including other owners' resources.
    Admin,
    /// Submit, cancel and delete its own jobs and sweeps; upload data sets and weights; read.
    Train,
    /// Inference.
    Predict,
    /// GETs of what it may see.
    Read,
}

impl Scope {
    /// Every scope, in the order they are shown.
    pub const ALL: [Scope; 4] = [Scope::Admin, Scope::Train, Scope::Predict, Scope::Read];

    /// Its name, as in `--scope`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Train => "train",
            Scope::Predict => "predict",
            Scope::Read => "read",
        }
    }

    /// A scope by name.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name.trim())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Limits on what one token may hold and do. Admin tokens, and the open service without
/// tokens, have none.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quotas {
    /// Jobs queued or running at once; more are a 429.
    pub active_jobs: u32,
    /// Trials in one sweep.
    pub sweep_trials: u32,
    /// A sweep's estimated work: the sum over its trials of rows x epochs.
    pub sweep_sample_epochs: u64,
    /// `checkpoints.keep_last` of one job.
    pub keep_last: u32,
    /// Bytes of the data folder its jobs, data sets and weights may use.
    pub storage_bytes: u64,
    /// Data-set and weights uploads in any hour.
    pub uploads_per_hour: u32,
    /// Requests per second, with bursts of twice as many.
    pub requests_per_second: u32,
}

/// A token's own values for some quotas, in place of the service's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_jobs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep_trials: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep_sample_epochs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uploads_per_hour: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
}

impl QuotaOverrides {
    /// The names `--quota NAME=VALUE` accepts.
    pub const NAMES: [&'static str; 7] = [
        "active_jobs",
        "sweep_trials",
        "sweep_sample_epochs",
        "keep_last",
        "storage_bytes",
        "uploads_per_hour",
        "requests_per_second",
    ];

    /// Sets one quota from `NAME=VALUE`.
    pub fn set(&mut self, assignment: &str) -> Result<(), String> {
        let (name, value) = assignment
            .split_once('=')
            .ok_or_else(|| format!("'{assignment}' is not NAME=VALUE"))?;
        let name = name.trim();
        let number: u64 = value
            .trim()
            .parse()
            .map_err(|_| format!("quota {name}: '{}' is not a whole number", value.trim()))?;
        let small =
            || u32::try_from(number).map_err(|_| format!("quota {name}: {number} is too large"));
        match name {
            "active_jobs" => self.active_jobs = Some(small()?),
            "sweep_trials" => self.sweep_trials = Some(small()?),
            "sweep_sample_epochs" => self.sweep_sample_epochs = Some(number),
            "keep_last" => self.keep_last = Some(small()?),
            "storage_bytes" => self.storage_bytes = Some(number),
            "uploads_per_hour" => self.uploads_per_hour = Some(small()?),
            "requests_per_second" => self.requests_per_second = Some(small()?),
            other => {
                return Err(format!(
                    "unknown quota '{other}'; valid: {}",
                    Self::NAMES.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The largest byte or sample-epoch quota: every JSON client reads it exactly (2^53 - 1).
    pub const MAX_LARGE: u64 = (1 << 53) - 1;

    /// A 422 naming `quotas.<name>` for a value JSON clients could not read exactly.
    pub fn check(&self) -> crate::error::Result<()> {
        for (name, value) in [
            ("storage_bytes", self.storage_bytes),
            ("sweep_sample_epochs", self.sweep_sample_epochs),
        ] {
            if let Some(value) = value.filter(|v| *v > Self::MAX_LARGE) {
                return Err(crate::error::Error::invalid(
                    format!("quotas.{name}"),
                    format!("{value} is too large; valid: 0 to {}", Self::MAX_LARGE),
                ));
            }
        }
        Ok(())
    }

    /// The service's quotas with these in place.
    pub fn apply(&self, base: Quotas) -> Quotas {
        Quotas {
            active_jobs: self.active_jobs.unwrap_or(base.active_jobs),
            sweep_trials: self.sweep_trials.unwrap_or(base.sweep_trials),
            sweep_sample_epochs: self.sweep_sample_epochs.unwrap_or(base.sweep_sample_epochs),
            keep_last: self.keep_last.unwrap_or(base.keep_last),
            storage_bytes: self.storage_bytes.unwrap_or(base.storage_bytes),
            uploads_per_hour: self.uploads_per_hour.unwrap_or(base.uploads_per_hour),
            requests_per_second: self.requests_per_second.unwrap_or(base.requests_per_second),
        }
    }
}

/// The caller of one request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's id; `None` when the service runs without tokens.
    pub token_id: Option<String>,
    /// Who what it makes belongs to; `None` without tokens.
    pub owner: Option<String>,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Its limits; `None` for admin tokens and the open service.
    pub quotas: Option<Quotas>,
}

impl Caller {
    /// The caller of a service that has no tokens: it may do everything.
    pub fn open() -> Caller {
        Caller {
            token_id: None,
            owner: None,
            scopes: vec![Scope::Admin],
            quotas: None,
        }
    }

    /// The service itself acting for `owner` (resuming a sweep): it sees everything, and
    /// what it makes belongs to `owner`.
    pub fn acting_for(owner: Option<String>) -> Caller {
        Caller {
            token_id: None,
            owner,
            scopes: vec![Scope::Admin],
            quotas: None,
        }
    }

    /// Whether it may see and act on every owner's resources.
    pub fn is_admin(&self) -> bool {
        self.scopes.contains(&Scope::Admin)
    }

    /// Whether it holds `scope`, directly or through a wider one.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|&held| {
            held == scope || held == Scope::Admin || (held == Scope::Train && scope == Scope::Read)
        })
    }

    /// Whether a resource of `owner` (public or not) is visible to it.
    pub fn sees(&self, owner: Option<&str>, public: bool) -> bool {
        public || self.is_admin() || (owner.is_some() && owner == self.owner.as_deref())
    }

    /// The owner to filter lists by: `None` lists everyone's (admin).
    pub fn owner_filter(&self) -> Option<&str> {
        if self.is_admin() {
            None
        } else {
            // A non-admin caller always has an owner; an empty one matches nothing.
            Some(self.owner.as_deref().unwrap_or(""))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(scopes: &[Scope], owner: &str) -> Caller {
        Caller {
            token_id: Some("t".into()),
            owner: Some(owner.into()),
            scopes: scopes.to_vec(),
            quotas: None,
        }
    }

    #[test]
    fn train_includes_read_and_admin_includes_everything() {
        let train = caller(&[Scope::Train], "a");
        assert!(train.has(Scope::Read) && train.has(Scope::Train));
        assert!(!train.has(Scope::Predict) && !train.has(Scope::Admin));
        let admin = caller(&[Scope::Admin], "a");
        assert!(Scope::ALL.iter().all(|&s| admin.has(s)));
        let read = caller(&[Scope::Read], "a");
        assert!(!read.has(Scope::Train));
    }

    #[test]
    fn a_caller_sees_its_own_public_and_with_admin_everything() {
        let a = caller(&[Scope::Train], "a");
        assert!(a.sees(Some("a"), false));
        assert!(!a.sees(Some("b"), false));
        assert!(!a.sees(None, false));
        assert!(a.sees(None, true));
        assert!(caller(&[Scope::Admin], "x").sees(Some("b"), false));
        assert!(Caller::open().sees(None, false));
    }

    #[test]
    fn quota_overrides_are_named_and_checked() {
        let mut overrides = QuotaOverrides::default();
        overrides.set("active_jobs=3").unwrap();
        overrides.set(" storage_bytes = 1000 ").unwrap();
        assert!(
            overrides
                .set("nope=1")
                .unwrap_err()
                .contains("valid: active_jobs")
        );
        assert!(overrides.set("active_jobs=x").is_err());
        assert!(overrides.set("active_jobs").is_err());
        assert!(overrides.set("keep_last=99999999999").is_err());
        assert_eq!(overrides.active_jobs, Some(3));
        assert_eq!(overrides.storage_bytes, Some(1000));
    }
}
