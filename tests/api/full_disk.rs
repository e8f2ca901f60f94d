//! A data folder that runs out of space: nothing acknowledged is lost, a failed write ends the
//! job with its reason, and the service recovers by itself once space is freed.
//!
//! The data folder lives on a small tmpfs that the test mounts (root only). Outside CI a
//! machine that cannot mount one skips these tests with a line saying so; under `CI=true` that
//! is a failure.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::helpers::{Api, ServerProcess, digits_spec};

/// A tmpfs of a fixed size, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `mib` MiB, or says why not (and fails under CI).
    fn mount(mib: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|status| status.success());
        if mounted {
            return Some(SmallDisk { dir });
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must be able to mount a tmpfs (run as root) for the full-disk tests"
        );
        eprintln!(
            "skipping: cannot mount a tmpfs here (run as root to include the full-disk tests)"
        );
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk to the last byte; returns the filler file.
    fn fill(&self) -> PathBuf {
        self.fill_as("filler")
    }

    /// Fills what is left of the disk with a file of this name; returns it.
    fn fill_as(&self, name: &str) -> PathBuf {
        let path = self.path().join(name);
        let mut file = File::create(&path).expect("a filler file");
        let block = vec![0u8; 64 * 1024];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) if err.kind() == ErrorKind::StorageFull => break,
                Err(err) => panic!("filling the disk: {err}"),
            }
        }
        // The tail that a whole block did not fit into.
        while file.write(&[0u8; 512]).is_ok_and(|n| n > 0) {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

async fn status_of(server: &ServerProcess, id: &str) -> Value {
    let (status, job) = server.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    job
}

async fn wait_for(
    server: &ServerProcess,
    id: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let started = Instant::now();
    while started.elapsed() < within {
        let job = status_of(server, id).await;
        if done(&job) {
            return Some(job);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn a_job_submitted_on_a_full_disk_is_either_kept_for_good_or_refused_with_507() {
    let Some(disk) = SmallDisk::mount(48) else {
        return;
    };
    let mut server = ServerProcess::start(disk.path()).await;
    disk.fill();

    // Enough submissions that the database's log must grow past what it already holds.
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..300 {
        let mut spec = digits_spec(1, 64);
        spec["name"] = json!(format!("full-disk-{i:03}-{}", "x".repeat(60)));
        let (status, body) = server.post("/v1/jobs", spec).await;
        match status {
            StatusCode::CREATED => accepted.push(body["id"].as_str().unwrap().to_string()),
            StatusCode::INSUFFICIENT_STORAGE => {
                assert_eq!(body["code"], "insufficient_storage", "{body}");
                refused += 1;
            }
            other => panic!("a submission on a full disk answered {other}: {body}"),
        }
    }
    assert!(refused > 0, "a full disk refused nothing");
    for id in &accepted {
        let (status, job) = server.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(status, StatusCode::OK, "accepted job {id} is gone: {job}");
    }

    // Assert: after a crash and a restart with space again, exactly the accepted jobs exist.
    server.kill_hard();
    std::fs::remove_file(disk.path().join("filler")).expect("free the disk");
    let server = ServerProcess::start(disk.path()).await;
    let (_, listed) = server.get("/v1/jobs?limit=1").await;
    assert_eq!(
        listed["total"].as_u64(),
        Some(accepted.len() as u64),
        "{refused} refused, {} accepted",
        accepted.len()
    );
    for id in &accepted {
        let (status, _) = server.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "accepted job {id} was lost in the restart"
        );
    }
}

#[tokio::test]
async fn a_full_disk_during_training_fails_the_job_with_its_reason_and_the_queue_keeps_working() {
    let Some(disk) = SmallDisk::mount(48) else {
        return;
    };
    let server = ServerProcess::start(disk.path()).await;
    // Arrange: a few MiB of room, and a long job that keeps every checkpoint, so its own
    // checkpoints fill the disk within a few epochs.
    let filler = disk.fill();
    let room = 3 * 1024 * 1024;
    let file = File::options()
        .write(true)
        .open(&filler)
        .expect("the filler");
    let filled = file.metadata().expect("its size").len();
    file.set_len(filled.saturating_sub(room))
        .expect("leave some room");
    // Closed now: tmpfs frees an unlinked file only once nothing holds it open.
    drop(file);
    let mut long = digits_spec(2000, 64);
    long["checkpoints"] = json!({"every": 1, "keep_last": 100000});
    let running = server.submit(long).await;

    // Act: the checkpoint writer hits the full disk.
    let job = wait_for(&server, &running, Duration::from_secs(120), |job| {
        job["status"] != "running" && job["status"] != "queued"
    })
    .await
    .expect("the job whose checkpoint could not be written ends");

    // Assert: it failed with the reason, and readiness says why the node cannot take work.
    assert_eq!(job["status"], "failed", "{job}");
    let failure = job["failure"].as_str().unwrap_or_default();
    assert!(failure.contains("no space left"), "{failure}");
    // Ending the job may have freed room (its partial checkpoint, the reserve spent to record
    // the failure): whatever it freed is filled again, so the disk is full when asked.
    let refill = disk.fill_as("filler-2");
    let (ready, readiness) = server.get("/readyz").await;
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE, "{readiness}");
    assert_eq!(readiness["disk_writable"], false, "{readiness}");
    let leftovers: Vec<_> = walk(&disk.path().join("checkpoints"))
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "partial checkpoints left: {leftovers:?}"
    );

    // Once space is back, the same process claims, trains and cancels again.
    std::fs::remove_file(filler).expect("free the disk");
    std::fs::remove_file(refill).expect("free the disk");
    let (ready, readiness) = server.get("/readyz").await;
    assert_eq!(ready, StatusCode::OK, "{readiness}");
    let next = server.submit(digits_spec(2, 64)).await;
    let next = wait_for(&server, &next, Duration::from_secs(60), |job| {
        job["status"] == "succeeded" || job["status"] == "failed"
    })
    .await
    .expect("a job submitted after the disk was freed is claimed and ends");
    assert_eq!(next["status"], "succeeded", "{next}");
    let to_cancel = server.submit(digits_spec(2000, 64)).await;
    let (status, body) = server
        .post(&format!("/v1/jobs/{to_cancel}/cancel"), json!({}))
        .await;
    assert!(
        status.is_success(),
        "cancel after a full disk: {status} {body}"
    );
    let cancelled = wait_for(&server, &to_cancel, Duration::from_secs(30), |job| {
        job["status"] == "cancelled"
    })
    .await;
    assert!(cancelled.is_some(), "the cancelled job stops");
}

#[tokio::test]
async fn an_upload_on_a_full_disk_is_a_507_that_leaves_nothing_behind() {
    let Some(disk) = SmallDisk::mount(48) else {
        return;
    };
    let server = ServerProcess::start(disk.path()).await;
    let upload = |name: &'static str| {
        let mut csv = String::from("x,y,label\n");
        for i in 0..300 {
            csv.push_str(&format!("{i},{},{}\n", i * 2, i % 3));
        }
        let form = Form::new()
            .text("name", name)
            .text("label_column", "label")
            .part("file", Part::text(csv).file_name("data.csv"));
        let request = server
            .http()
            .post(format!("{}/v1/datasets", server.base()))
            .multipart(form);
        async move { crate::helpers::decode(request.send().await.unwrap()).await }
    };
    let filler = disk.fill();

    // Act: an upload while the data folder has no room.
    let (status, body) = upload("refused").await;

    // Assert: a 507 saying so, no temporary file left, and the same upload works once there
    // is room again.
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert_eq!(body["code"], "insufficient_storage", "{body}");
    let leftovers: Vec<_> = walk(&disk.path().join("datasets"))
        .into_iter()
        .filter(|path| path.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "upload debris: {leftovers:?}");
    std::fs::remove_file(filler).expect("free the disk");
    let (status, body) = upload("kept").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}
