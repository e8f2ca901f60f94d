//! Runs the PyTorch peer script for one workload and one repeat.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use trainserve::error::{Error, Result};

/// A runnable peer: a Python with torch and the peer script.
#[derive(Clone, Debug)]
pub struct Peer {
    python: String,
    script: String,
}

impl Peer {
    /// The peer, if both the interpreter and the script exist.
    pub fn find(python: &str, script: &str) -> Option<Peer> {
        (Path::new(python).exists() && Path::new(script).exists()).then(|| Peer {
            python: python.to_string(),
            script: script.to_string(),
        })
    }

    /// Runs `peer_torch.py --workload <workload> --repeats 1 <extra>` and returns its JSON lines.
    pub fn run(&self, workload: &str, extra: &[String]) -> Result<Vec<Value>> {
        let output = Command::new(&self.python)
            .arg(&self.script)
            .args(["--workload", workload, "--repeats", "1"])
            .args(extra)
            .output()
            .map_err(|err| Error::internal("starting the peer", err))?;
        if !output.status.success() {
            return Err(Error::Internal(format!(
                "the peer failed: {}",
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect())
    }
}
