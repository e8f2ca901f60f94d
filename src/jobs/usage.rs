//! Disk usage: checkpoint bytes per job, data-set folders, uploaded weights, and the whole
//! data folder.

use serde::Serialize;

use super::Jobs;
use crate::catalog::size_of;
use crate::domain::{DatasetId, JobId, JobStatus, SweepId, WeightsId};
use crate::error::{Error, Result};
use crate::store::UsageFilter;

/// What the data folder holds, by what holds it.
#[derive(Clone, Debug, Serialize)]
pub struct Usage {
    /// Bytes of jobs' checkpoints, data sets and weights together.
    pub total_bytes: u64,
    /// Bytes of every file under the data folder: the above plus the database, its
    /// write-ahead log and the disk reserve. Only in a report of everyone's usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir_bytes: Option<u64>,
    /// Sums over every job, data set and upload of weights.
    pub totals: UsageTotals,
    /// Jobs by checkpoint bytes, largest first, at most `limit`.
    pub jobs: Vec<JobUsage>,
    /// Data sets by bytes on disk, largest first, at most `limit`.
    pub datasets: Vec<DatasetUsage>,
    /// Uploaded weights by bytes, largest first, at most `limit`.
    pub weights: Vec<WeightsUsage>,
}

/// The sums of a usage report.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct UsageTotals {
    /// Every job's checkpoints.
    pub jobs: KindTotal,
    /// Every data set's folder.
    pub datasets: KindTotal,
    /// Every upload of weights.
    pub weights: KindTotal,
}

/// How many of a kind there are, their files and bytes.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct KindTotal {
    /// Jobs, data sets or uploads.
    pub count: u64,
    /// Checkpoint files (jobs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<u64>,
    /// Bytes on disk.
    pub bytes: u64,
}

/// One job's checkpoints.
#[derive(Clone, Debug, Serialize)]
pub struct JobUsage {
    /// The job.
    pub id: JobId,
    /// Its name.
    pub name: String,
    /// Its status.
    pub status: JobStatus,
    /// Kept by the age retention.
    pub pinned: bool,
    /// The sweep it is a trial of.
    pub sweep_id: Option<SweepId>,
    /// Checkpoint files it keeps.
    pub checkpoints: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// One data set's folder.
#[derive(Clone, Debug, Serialize)]
pub struct DatasetUsage {
    /// The data set.
    pub id: DatasetId,
    /// Its name.
    pub name: String,
    /// `builtin`, `upload` or `synthetic`.
    pub source: String,
    /// Bytes of its files.
    pub bytes: u64,
}

/// One upload of weights.
#[derive(Clone, Debug, Serialize)]
pub struct WeightsUsage {
    /// The upload.
    pub id: WeightsId,
    /// Its name.
    pub name: String,
    /// Bytes of its file.
    pub bytes: u64,
}

fn unsigned(value: i64) -> u64 {
    value.max(0) as u64
}

impl Jobs {
    /// Bytes on disk by job, data set and upload, with totals. Checkpoint and weights bytes
    /// are those recorded when each file was written; data sets and the data folder are
    /// measured on disk.
    pub async fn usage(&self, filter: &UsageFilter) -> Result<Usage> {
        let store = &self.inner.store;
        let jobs: Vec<JobUsage> = store
            .job_usage(filter)
            .await?
            .into_iter()
            .map(|row| JobUsage {
                id: row.id,
                name: row.name,
                status: row.status,
                pinned: row.pinned,
                sweep_id: row.sweep_id.0,
                checkpoints: unsigned(row.checkpoints),
                bytes: unsigned(row.bytes),
            })
            .collect();
        let job_totals = store.job_usage_totals(filter).await?;
        let weights: Vec<WeightsUsage> = store
            .weights_usage(filter)
            .await?
            .into_iter()
            .map(|row| WeightsUsage {
                id: row.id,
                name: row.name,
                bytes: unsigned(row.bytes),
            })
            .collect();
        let weights_totals = store.weights_usage_totals(filter).await?;
        let mut datasets = Vec::new();
        // An owner's usage counts its own data sets, not the shared ones it may also see.
        let listed = self.inner.catalog.list(filter.owner.as_deref()).await?;
        let owned: Vec<_> = match &filter.owner {
            None => listed,
            Some(owner) => {
                let mut own = Vec::with_capacity(listed.len());
                for row in listed {
                    let ownership = self
                        .inner
                        .store
                        .ownership(crate::store::OwnedKind::Dataset, &row.id.to_string())
                        .await?;
                    if ownership.and_then(|o| o.owner).as_deref() == Some(owner) {
                        own.push(row);
                    }
                }
                own
            }
        };
        for row in owned {
            datasets.push(DatasetUsage {
                bytes: self.inner.catalog.folder_bytes(row.id).await?,
                id: row.id,
                name: row.name,
                source: row.source,
            });
        }
        datasets.sort_by_key(|d| std::cmp::Reverse(d.bytes));
        let dataset_totals = KindTotal {
            count: datasets.len() as u64,
            checkpoints: None,
            bytes: datasets.iter().map(|d| d.bytes).sum(),
        };
        datasets.truncate(unsigned(filter.limit) as usize);
        let data_dir = self.inner.config.data_dir.clone();
        let data_dir_bytes = match filter.owner {
            Some(_) => None,
            None => Some(
                tokio::task::spawn_blocking(move || size_of(&data_dir))
                    .await
                    .map_err(|err| Error::internal("measuring the data folder", err))?,
            ),
        };
        let totals = UsageTotals {
            jobs: KindTotal {
                count: unsigned(job_totals.count),
                checkpoints: Some(unsigned(job_totals.files)),
                bytes: unsigned(job_totals.bytes),
            },
            datasets: dataset_totals,
            weights: KindTotal {
                count: unsigned(weights_totals.count),
                checkpoints: None,
                bytes: unsigned(weights_totals.bytes),
            },
        };
        Ok(Usage {
            total_bytes: totals.jobs.bytes + totals.datasets.bytes + totals.weights.bytes,
            data_dir_bytes,
            totals,
            jobs,
            datasets,
            weights,
        })
    }
}
