//! Step-loss noise of several jobs, for the batch-size question: the step losses (bucket means)
//! against training progress in epochs, and each epoch's coefficient of variation of its step
//! losses, one colour per job.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{
    AxisText, Chart, DrawResult, ImageFormat, LegendEntry, Message, Scale, Swatch, draw_legend,
    fmt_value, legend_width, min_max, panel, render, segments, series_color, titled, truncate,
};
use crate::error::Result;
use crate::store::{EpochRow, StepBatch};

const SIZE: (u32, u32) = (1100, 860);

/// One job's noise: its step losses placed on an epoch axis and its per-epoch variation.
#[derive(Clone, Debug)]
pub struct NoiseSeries {
    /// The job's name.
    pub name: String,
    /// (epochs of training done, mean step loss of a bucket of steps), in order; epoch 1.5 is
    /// halfway through the second epoch's steps.
    pub steps: Vec<(f64, f64)>,
    /// (epoch, coefficient of variation of that epoch's step losses).
    pub cv: Vec<(i64, Option<f64>)>,
}

impl NoiseSeries {
    /// A job's series from its stored step losses and epochs, with at most about `max_points`
    /// step points (consecutive steps of an epoch averaged in equal buckets; non-finite
    /// losses are left out of the means).
    pub fn from_steps(
        name: &str,
        batches: &[StepBatch],
        epochs: &[EpochRow],
        max_points: usize,
    ) -> NoiseSeries {
        let total: usize = batches.iter().map(|b| b.losses.len()).sum();
        let bucket = total.div_ceil(max_points.max(1)).max(1);
        let mut steps = Vec::new();
        for batch in batches {
            let n = batch.losses.len().max(1) as f64;
            for (k, chunk) in batch.losses.chunks(bucket).enumerate() {
                let finite: Vec<f64> = chunk
                    .iter()
                    .map(|v| f64::from(*v))
                    .filter(|v| v.is_finite())
                    .collect();
                if finite.is_empty() {
                    continue;
                }
                let done = (k * bucket + chunk.len()) as f64;
                steps.push((
                    (batch.epoch - 1) as f64 + done / n,
                    finite.iter().sum::<f64>() / finite.len() as f64,
                ));
            }
        }
        NoiseSeries {
            name: name.to_string(),
            steps,
            cv: epochs.iter().map(|e| (e.epoch, e.step_loss_cv)).collect(),
        }
    }
}

/// The jobs' step-loss noise as an image.
pub fn step_noise(series: &[NoiseSeries], format: ImageFormat) -> Result<Vec<u8>> {
    let n = series.len();
    let title = format!("Step-loss noise, {n} job{}", if n == 1 { "" } else { "s" });
    if series.iter().all(|s| s.steps.is_empty()) {
        return render(
            &Message {
                size: SIZE,
                title,
                message: "No step losses recorded yet".into(),
            },
            format,
        );
    }
    render(&Noise { title, series }, format)
}

struct Noise<'a> {
    title: String,
    series: &'a [NoiseSeries],
}

fn mean_cv(s: &NoiseSeries) -> Option<f64> {
    let values: Vec<f64> =
        s.cv.iter()
            .filter_map(|(_, v)| *v)
            .filter(|v| v.is_finite())
            .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

impl Chart for Noise<'_> {
    fn size(&self) -> (u32, u32) {
        SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let body = titled(
            root,
            &self.title,
            "top: step losses (bucket means) over training; bottom: std / mean of each epoch's step losses",
        )?;
        let legend: Vec<LegendEntry> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| LegendEntry {
                swatch: Swatch::Line {
                    color: series_color(i),
                    dashed: false,
                    marker: false,
                },
                label: match mean_cv(s) {
                    Some(cv) => format!("{}: mean CV {}", truncate(&s.name, 60), fmt_value(cv)),
                    None => truncate(&s.name, 60),
                },
            })
            .collect();
        let (w, _) = body.dim_in_pixel();
        let (plots, legend_area) =
            body.split_horizontally(w - legend_width("jobs", &legend, w * 2 / 5));
        draw_legend(&legend_area.margin(8, 0, 0, 0), "jobs", &legend)?;
        let (_, h) = plots.dim_in_pixel();
        let (top, bottom) = plots.split_vertically(h * 3 / 5);

        let progress: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.steps.iter().map(|(x, _)| *x))
            .collect();
        let (lo, hi) = min_max(&progress);
        let x = Scale::fit(&[lo.min(0.0), hi], false, 0.01, None);
        let losses: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.steps.iter().map(|(_, v)| *v))
            .collect();
        let y = Scale::fit(&losses, true, 0.05, None);
        let y_desc = if y.log {
            "step loss (log scale)"
        } else {
            "step loss"
        };
        let mut chart = panel(
            &top,
            &x,
            &y,
            &AxisText {
                caption: None,
                x_desc: "epochs of training",
                y_desc,
            },
        )?;
        for (i, s) in self.series.iter().enumerate().rev() {
            let runs = segments(s.steps.iter().map(|(p, v)| (*p, Some(*v))), &x, &y);
            for run in runs {
                chart.draw_series(LineSeries::new(
                    run.iter().copied(),
                    series_color(i).stroke_width(1),
                ))?;
            }
        }

        let epochs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.cv.iter().map(|(e, _)| *e as f64))
            .collect();
        let (first, last) = min_max(&epochs);
        let ex = if epochs.is_empty() {
            Scale::epochs(1.0, 1.0)
        } else {
            Scale::epochs(first, last)
        };
        let cvs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.cv.iter().filter_map(|(_, v)| *v))
            .collect();
        let cy = Scale::fit(&cvs, true, 0.08, None);
        let cy_desc = if cy.log {
            "step-loss CV (log scale)"
        } else {
            "step-loss CV"
        };
        let mut chart = panel(
            &bottom,
            &ex,
            &cy,
            &AxisText {
                caption: None,
                x_desc: "epoch",
                y_desc: cy_desc,
            },
        )?;
        for (i, s) in self.series.iter().enumerate().rev() {
            let color = series_color(i);
            let runs = segments(s.cv.iter().map(|(e, v)| (*e as f64, *v)), &ex, &cy);
            for run in runs {
                chart.draw_series(LineSeries::new(run.iter().copied(), color.stroke_width(2)))?;
                chart.draw_series(run.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::svg_check::{assert_texts, lines_of, no_bad_numbers, texts};
    use super::*;

    fn job(name: &str, steps_per_epoch: usize, wobble: f64) -> NoiseSeries {
        let mut steps = Vec::new();
        for s in 0..steps_per_epoch * 2 {
            let progress = (s + 1) as f64 / steps_per_epoch as f64;
            let loss =
                2.0 / (1.0 + progress) * (1.0 + wobble * if s % 2 == 0 { 1.0 } else { -1.0 });
            steps.push((progress, loss));
        }
        NoiseSeries {
            name: name.into(),
            steps,
            cv: vec![(1, Some(wobble)), (2, Some(wobble * 0.9))],
        }
    }

    #[test]
    fn each_job_gets_a_colour_in_both_panels_and_its_mean_variation_in_the_legend() {
        let series = [job("batch 1", 200, 0.6), job("batch 128", 4, 0.02)];
        let svg = String::from_utf8(step_noise(&series, ImageFormat::Svg).unwrap()).unwrap();
        no_bad_numbers(&svg);
        let texts = texts(&svg);
        assert_texts(
            &texts,
            &[
                "batch 1: mean CV 0.570",
                "batch 128: mean CV 0.019",
                "epochs of training",
                "epoch",
            ],
        );
        assert!(
            texts.iter().any(|t| t.starts_with("step-loss CV")),
            "{texts:?}"
        );
        for i in 0..2 {
            assert!(
                lines_of(&svg, &series_color(i)) >= 2,
                "job {i} in both panels"
            );
        }
        let png = step_noise(&series, ImageFormat::Png).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn stored_steps_are_placed_within_their_epoch_and_averaged_in_buckets() {
        let batches = [
            StepBatch {
                epoch: 1,
                first_step: 1,
                losses: vec![4.0, 2.0, 1.0, f32::NAN],
            },
            StepBatch {
                epoch: 2,
                first_step: 5,
                losses: vec![1.0, 1.0, 0.5, 0.5],
            },
        ];
        let epochs = [crate::analysis::epoch(1, 1.0, 1.0, 0.5)];
        let s = NoiseSeries::from_steps("job", &batches, &epochs, 4);
        assert_eq!(
            s.steps,
            vec![(0.5, 3.0), (1.0, 1.0), (1.5, 1.0), (2.0, 0.5)]
        );
        assert_eq!(s.cv, vec![(1, Some(0.1))]);
    }

    #[test]
    fn no_steps_yet_says_so() {
        let svg = String::from_utf8(
            step_noise(
                &[NoiseSeries {
                    name: "new".into(),
                    steps: vec![],
                    cv: vec![],
                }],
                ImageFormat::Svg,
            )
            .unwrap(),
        )
        .unwrap();
        assert!(texts(&svg).iter().any(|t| t.contains("No step losses")));
    }
}
