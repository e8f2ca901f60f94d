//! Quota checks: each answers before anything is written, with how long to wait when waiting
//! helps.

use std::path::{Path, PathBuf};

use super::Gate;
use crate::domain::{Caller, Quotas, format_bytes};
use crate::error::{Error, Result};
use crate::store::Store;

/// Measures what an owner keeps in the data folder.
#[derive(Clone, Debug)]
pub struct StorageMeter {
    datasets_dir: PathBuf,
}

impl StorageMeter {
    /// A meter over the data folder's `datasets` folder.
    pub fn new(datasets_dir: PathBuf) -> StorageMeter {
        StorageMeter { datasets_dir }
    }

    /// Bytes of an owner's checkpoints, weights and data sets.
    pub async fn bytes_of(&self, store: &Store, owner: &str) -> Result<u64> {
        let (files, datasets) = store.holdings_of(owner).await?;
        let dir = self.datasets_dir.clone();
        let folders = tokio::task::spawn_blocking(move || {
            datasets
                .iter()
                .map(|id| folder_bytes(&dir.join(id)))
                .sum::<u64>()
        })
        .await
        .map_err(|err| Error::internal("measuring data sets", err))?;
        Ok(u64::try_from(files).unwrap_or(0) + folders)
    }
}

/// Bytes of the files under a folder; what cannot be read counts as empty.
pub fn folder_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => folder_bytes(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

impl Gate {
    fn limited(caller: &Caller) -> Option<(&Quotas, &str)> {
        Some((caller.quotas.as_ref()?, caller.owner.as_deref()?))
    }

    /// Room for `adding` more queued jobs, and for more files.
    pub async fn check_new_jobs(&self, caller: &Caller, adding: u64) -> Result<()> {
        let Some((quotas, owner)) = Self::limited(caller) else {
            return Ok(());
        };
        let active = self.inner.store.active_jobs_of(owner).await?.max(0) as u64;
        if active + adding > u64::from(quotas.active_jobs) {
            return Err(Error::quota(
                format!(
                    "this token may have {} jobs queued or running and has {active}; {adding} more would exceed it. Wait for some to finish, or cancel some",
                    quotas.active_jobs
                ),
                Some(30),
            ));
        }
        self.check_storage(caller).await
    }

    /// Room for another upload this hour, and in the data folder.
    pub async fn check_upload(&self, caller: &Caller) -> Result<()> {
        let Some((quotas, owner)) = Self::limited(caller) else {
            return Ok(());
        };
        let recent = self.inner.store.uploads_in_last_hour(owner).await?;
        if recent.len() as u64 >= u64::from(quotas.uploads_per_hour) {
            let wait = recent
                .first()
                .and_then(|oldest| seconds_until_an_hour_after(oldest))
                .unwrap_or(3600);
            return Err(Error::quota(
                format!(
                    "this token may upload {} data sets or weights an hour and has uploaded {}",
                    quotas.uploads_per_hour,
                    recent.len()
                ),
                Some(wait),
            ));
        }
        self.check_storage(caller).await
    }

    /// Room in the data folder under the caller's storage quota.
    pub async fn check_storage(&self, caller: &Caller) -> Result<()> {
        let Some((quotas, owner)) = Self::limited(caller) else {
            return Ok(());
        };
        let used = self.storage().bytes_of(&self.inner.store, owner).await?;
        if used >= quotas.storage_bytes {
            return Err(Error::quota(
                format!(
                    "this token's jobs, data sets and weights use {} of its {} storage quota; delete some (DELETE /v1/jobs/{{id}}, /v1/datasets/{{id}}, /v1/weights/{{id}}) first",
                    format_bytes(used),
                    format_bytes(quotas.storage_bytes)
                ),
                None,
            ));
        }
        Ok(())
    }
}

/// Seconds from now until an hour after `created_at` (`YYYY-MM-DDTHH:MM:SS.sssZ`, UTC).
fn seconds_until_an_hour_after(created_at: &str) -> Option<u64> {
    let then = parse_utc_millis(created_at)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as i64;
    Some(((then + 3_600_000 - now).max(1000) as u64).div_ceil(1000))
}

/// Milliseconds since the epoch of a `YYYY-MM-DDTHH:MM:SS.sssZ` time.
fn parse_utc_millis(text: &str) -> Option<i64> {
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute) = (number(11..13)?, number(14..16)?);
    let seconds: f64 = text.get(17..)?.trim_end_matches('Z').parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + (seconds * 1000.0).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_read_as_epoch_milliseconds() {
        assert_eq!(parse_utc_millis("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            parse_utc_millis("2000-03-01T00:00:01.500Z"),
            Some(951_868_801_500)
        );
        assert_eq!(parse_utc_millis("nonsense"), None);
    }
}
