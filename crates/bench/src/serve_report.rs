//! The `serve` workload's figures: a JSON line per scenario, the targets checked
//! (reported, never asserted), and a readable table.

use serde_json::{Value, json};

use super::load::Summary;
use super::serve::ServeOptions;

/// The connections at which single rows are compared with the echo route and with batches.
const COMPARED_AT: usize = 16;
/// Memory counts as flat over the soak when it grew by at most this fraction of where it
/// started...
const FLAT_FRACTION: f64 = 0.10;
/// ...or by at most this many MiB, whichever is larger (allocators keep some slack).
const FLAT_MIB: f64 = 8.0;

/// One scenario's figures.
#[derive(Clone, Debug)]
pub struct Measured {
    /// `echo`, `predict` or `predict_while_training`.
    pub name: &'static str,
    /// Connections (one worker each).
    pub connections: usize,
    /// Rows per request.
    pub rows: usize,
    /// What the load generator measured.
    pub summary: Summary,
    /// The service's CPU time over the run's wall time: how many of the machine's cores it
    /// kept busy (the load generator and, in one scenario, a training job share them).
    pub service_cores: f64,
    /// The service's resident memory before the measured run, in MiB.
    pub rss_before_mib: f64,
    /// The same after it.
    pub rss_after_mib: f64,
    /// For the scenario with a job training beside it: whether the job was still running
    /// when the run ended.
    pub trained_throughout: Option<bool>,
}

impl Measured {
    /// Its JSON line.
    pub fn json(&self) -> Value {
        let mut line = summary_json(&self.summary);
        line["bench"] = json!("serve");
        line["scenario"] = json!(self.name);
        line["connections"] = json!(self.connections);
        line["rows_per_request"] = json!(self.rows);
        line["service_cores"] = json!(round(self.service_cores, 2));
        line["rss_before_mib"] = json!(round(self.rss_before_mib, 1));
        line["rss_after_mib"] = json!(round(self.rss_after_mib, 1));
        if let Some(trained) = self.trained_throughout {
            line["job_trained_throughout"] = json!(trained);
        }
        line
    }
}

/// The soak: single rows at 16 connections for `--soak-seconds`, memory either side.
#[derive(Clone, Debug)]
pub struct Soak {
    /// What the load generator measured.
    pub summary: Summary,
    /// The service's CPU time over the soak's wall time.
    pub service_cores: f64,
    /// The service's resident memory before the soak, in MiB.
    pub rss_before_mib: f64,
    /// The same after it.
    pub rss_after_mib: f64,
}

impl Soak {
    /// Its JSON line.
    pub fn json(&self) -> Value {
        let mut line = summary_json(&self.summary);
        line["bench"] = json!("serve");
        line["scenario"] = json!("soak");
        line["connections"] = json!(COMPARED_AT);
        line["rows_per_request"] = json!(1);
        line["service_cores"] = json!(round(self.service_cores, 2));
        line["rss_before_mib"] = json!(round(self.rss_before_mib, 1));
        line["rss_after_mib"] = json!(round(self.rss_after_mib, 1));
        line
    }

    /// Whether memory stayed flat: it grew by at most [`FLAT_FRACTION`] or [`FLAT_MIB`].
    pub fn is_flat(&self) -> bool {
        self.rss_after_mib - self.rss_before_mib
            <= (self.rss_before_mib * FLAT_FRACTION).max(FLAT_MIB)
    }
}

/// One of the targets: what it asks, what was measured, and whether it was met
/// (`None` when it could not be judged).
#[derive(Clone, Debug)]
pub struct Goal {
    /// What it asks.
    pub wanted: &'static str,
    /// What was measured, for people.
    pub measured: String,
    /// Met, missed, or not judged.
    pub met: Option<bool>,
}

fn find<'a>(
    scenarios: &'a [Measured],
    name: &str,
    connections: usize,
    rows: usize,
) -> Option<&'a Measured> {
    scenarios
        .iter()
        .find(|m| m.name == name && m.connections == connections && m.rows == rows)
}

/// The targets, checked against the scenarios and the soak.
pub fn targets(scenarios: &[Measured], soak: &Soak) -> Vec<Goal> {
    let echo = find(scenarios, "echo", COMPARED_AT, 1).map(|m| m.summary);
    let single = find(scenarios, "predict", COMPARED_AT, 1).map(|m| m.summary);
    let batched = scenarios
        .iter()
        .find(|m| m.name == "predict" && m.connections == COMPARED_AT && m.rows > 1)
        .map(|m| m.summary);
    let training = find(scenarios, "predict_while_training", COMPARED_AT, 1);
    let mut goals = Vec::new();
    if let (Some(single), Some(echo)) = (single, echo) {
        let ratio = single.requests_per_s / echo.requests_per_s;
        goals.push(Goal {
            wanted: "single rows at 16 connections: requests/s >= 1/2 of the echo route's",
            measured: format!(
                "{} vs {} ({ratio:.2}x)",
                thousands(single.requests_per_s),
                thousands(echo.requests_per_s)
            ),
            met: Some(ratio >= 0.5),
        });
        let ratio = single.p99_ms / echo.p99_ms;
        goals.push(Goal {
            wanted: "single rows at 16 connections: p99 <= 1.5x the echo route's",
            measured: format!(
                "{:.2} ms vs {:.2} ms ({ratio:.2}x)",
                single.p99_ms, echo.p99_ms
            ),
            met: Some(ratio <= 1.5),
        });
    }
    let errors: u64 = scenarios.iter().map(|m| m.summary.errors).sum::<u64>() + soak.summary.errors;
    goals.push(Goal {
        wanted: "no errors (non-2xx or transport), every scenario and the soak",
        measured: errors.to_string(),
        met: Some(errors == 0),
    });
    goals.push(Goal {
        wanted: "flat resident memory over the soak (growth <= 10 % or 8 MiB)",
        measured: format!(
            "{:.1} -> {:.1} MiB over {:.0} s",
            soak.rss_before_mib, soak.rss_after_mib, soak.summary.seconds
        ),
        met: Some(soak.is_flat()),
    });
    if let Some(training) = training {
        let p99 = training.summary.p99_ms;
        goals.push(Goal {
            wanted: "single rows at 16 connections while a job trains: p99 < 5 ms",
            measured: match training.trained_throughout {
                Some(true) => format!("{p99:.2} ms"),
                _ => format!("{p99:.2} ms, but the job stopped training before the run ended"),
            },
            met: (training.trained_throughout == Some(true)).then_some(p99 < 5.0),
        });
    }
    if let (Some(single), Some(batched)) = (single, batched) {
        let ratio = batched.rows_per_s / single.rows_per_s;
        goals.push(Goal {
            wanted: "rows/s of 64-row requests >= 20x single rows' (16 connections)",
            measured: format!(
                "{} vs {} ({ratio:.1}x)",
                thousands(batched.rows_per_s),
                thousands(single.rows_per_s)
            ),
            met: Some(ratio >= 20.0),
        });
    }
    goals
}

/// The targets' JSON line.
pub fn targets_json(goals: &[Goal], options: &ServeOptions) -> Value {
    json!({
        "bench": "serve", "summary": true,
        "seconds_per_scenario": options.seconds, "soak_seconds": options.soak_seconds,
        "targets": goals.iter().map(|g| json!({"target": g.wanted, "measured": g.measured, "met": g.met})).collect::<Vec<_>>(),
        "all_met": goals.iter().all(|g| g.met == Some(true)),
    })
}

/// The figures as a Markdown table, then the targets as another.
pub fn table(scenarios: &[Measured], soak: &Soak, goals: &[Goal]) -> String {
    let mut out = String::from(
        "| scenario | connections | rows/request | requests/s | rows/s | p50 ms | p99 ms | p99.9 ms | errors | service cores | RSS MiB before -> after |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let mut row = |name: &str,
                   connections: usize,
                   rows: usize,
                   s: &Summary,
                   cores: f64,
                   rss: (f64, f64)| {
        out.push_str(&format!(
            "| {name} | {connections} | {rows} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {cores:.2} | {:.1} -> {:.1} |\n",
            thousands(s.requests_per_s),
            thousands(s.rows_per_s),
            s.p50_ms,
            s.p99_ms,
            s.p999_ms,
            s.errors,
            rss.0,
            rss.1,
        ));
    };
    for m in scenarios {
        let rss = (m.rss_before_mib, m.rss_after_mib);
        row(
            m.name,
            m.connections,
            m.rows,
            &m.summary,
            m.service_cores,
            rss,
        );
    }
    let soak_name = format!("soak ({:.0} s)", soak.summary.seconds);
    let rss = (soak.rss_before_mib, soak.rss_after_mib);
    row(
        &soak_name,
        COMPARED_AT,
        1,
        &soak.summary,
        soak.service_cores,
        rss,
    );
    out.push_str("\n| target | measured | met |\n|---|---|---|\n");
    for goal in goals {
        let met = match goal.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "not judged",
        };
        out.push_str(&format!(
            "| {} | {} | {met} |\n",
            goal.wanted, goal.measured
        ));
    }
    out
}

fn summary_json(s: &Summary) -> Value {
    json!({
        "seconds": round(s.seconds, 2), "requests": s.requests,
        "requests_per_s": s.requests_per_s.round(), "rows_per_s": s.rows_per_s.round(),
        "p50_ms": round(s.p50_ms, 3), "p99_ms": round(s.p99_ms, 3), "p999_ms": round(s.p999_ms, 3),
        "max_ms": round(s.max_ms, 3), "errors": s.errors,
    })
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// A whole number with thousands separated by commas: `31,250`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(requests_per_s: f64, rows: usize, p99_ms: f64) -> Summary {
        Summary {
            seconds: 8.0,
            requests: (requests_per_s * 8.0) as u64,
            requests_per_s,
            rows_per_s: requests_per_s * rows as f64,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            p999_ms: p99_ms * 2.0,
            max_ms: p99_ms * 3.0,
            errors: 0,
        }
    }

    fn measured(name: &'static str, rows: usize, s: Summary) -> Measured {
        Measured {
            name,
            connections: 16,
            rows,
            summary: s,
            service_cores: 1.0,
            rss_before_mib: 50.0,
            rss_after_mib: 50.0,
            trained_throughout: (name == "predict_while_training").then_some(true),
        }
    }

    #[test]
    fn single_rows_are_judged_against_the_echo_route_and_batches_against_single_rows() {
        let scenarios = [
            measured("echo", 1, summary(30_000.0, 1, 1.0)),
            measured("predict", 1, summary(16_000.0, 1, 1.6)),
            measured("predict", 64, summary(400.0, 64, 20.0)),
            measured("predict_while_training", 1, summary(9_000.0, 1, 6.0)),
        ];
        let soak = Soak {
            summary: summary(16_000.0, 1, 1.5),
            service_cores: 1.0,
            rss_before_mib: 100.0,
            rss_after_mib: 109.0,
        };
        let met: Vec<Option<bool>> = targets(&scenarios, &soak).iter().map(|g| g.met).collect();
        // Half the echo's requests/s: met; p99 1.6x the echo's: missed; no errors; 9 % more
        // memory is flat; 6 ms while training: missed; 25,600 rows/s is 1.6x 16,000: missed.
        assert_eq!(
            met,
            [
                Some(true),
                Some(false),
                Some(true),
                Some(true),
                Some(false),
                Some(false)
            ]
        );
    }

    #[test]
    fn thousands_are_separated_by_commas() {
        assert_eq!(thousands(31_250.4), "31,250");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }
}
