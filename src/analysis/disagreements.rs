//! Which samples one model classifies correctly and another does not.

use serde::Serialize;

/// One model's answer for one sample.
#[derive(Clone, Debug, Serialize)]
pub struct Answer {
    /// The predicted label.
    pub label: serde_json::Value,
    /// Its probability.
    pub confidence: f32,
}

/// A sample two models disagree on.
#[derive(Clone, Debug, Serialize)]
pub struct Disagreement {
    /// The row's index in the data set (also the index of its sample image).
    pub index: usize,
    /// The true label.
    pub true_label: serde_json::Value,
    /// Model A's answer.
    pub a: Answer,
    /// Model B's answer.
    pub b: Answer,
}

/// The samples where exactly one of two models is right, most confident mistakes first.
#[derive(Clone, Debug, Serialize)]
pub struct DisagreementSets {
    /// Rows compared.
    pub compared: usize,
    /// Accuracy of A on them.
    pub a_accuracy: f64,
    /// Accuracy of B on them.
    pub b_accuracy: f64,
    /// Rows where A is right and B wrong, in total.
    pub a_right_b_wrong_count: usize,
    /// Rows where B is right and A wrong, in total.
    pub b_right_a_wrong_count: usize,
    /// The first `limit` of them, B's most confident mistakes first.
    pub a_right_b_wrong: Vec<Disagreement>,
    /// The first `limit` of them, A's most confident mistakes first.
    pub b_right_a_wrong: Vec<Disagreement>,
}

/// Compares two models' (class, confidence) answers on the same rows with their true classes.
pub fn disagreements(
    rows: &[usize],
    truth: &[u32],
    a: &[(usize, f32)],
    b: &[(usize, f32)],
    label: impl Fn(usize) -> serde_json::Value,
    limit: usize,
) -> DisagreementSets {
    let answer = |(class, confidence): (usize, f32)| Answer {
        label: label(class),
        confidence,
    };
    let mut a_only = Vec::new();
    let mut b_only = Vec::new();
    let (mut a_right, mut b_right) = (0usize, 0usize);
    for (i, &row) in rows.iter().enumerate() {
        let t = truth[i] as usize;
        let (ra, rb) = (a[i].0 == t, b[i].0 == t);
        a_right += usize::from(ra);
        b_right += usize::from(rb);
        if ra != rb {
            let d = Disagreement {
                index: row,
                true_label: label(t),
                a: answer(a[i]),
                b: answer(b[i]),
            };
            if ra { a_only.push(d) } else { b_only.push(d) }
        }
    }
    a_only.sort_by(|x, y| y.b.confidence.total_cmp(&x.b.confidence));
    b_only.sort_by(|x, y| y.a.confidence.total_cmp(&x.a.confidence));
    let n = rows.len().max(1) as f64;
    DisagreementSets {
        compared: rows.len(),
        a_accuracy: a_right as f64 / n,
        b_accuracy: b_right as f64 / n,
        a_right_b_wrong_count: a_only.len(),
        b_right_a_wrong_count: b_only.len(),
        a_right_b_wrong: a_only.into_iter().take(limit).collect(),
        b_right_a_wrong: b_only.into_iter().take(limit).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_side_lists_what_only_it_gets_right_most_confident_mistakes_first() {
        let rows = [10, 11, 12, 13];
        let truth = [0, 1, 1, 0];
        let a = [(0, 0.9), (1, 0.8), (0, 0.6), (1, 0.7)];
        let b = [(1, 0.6), (1, 0.9), (1, 0.8), (0, 0.5)];
        let sets = disagreements(&rows, &truth, &a, &b, |c| serde_json::json!(c), 10);
        assert_eq!(
            sets.a_right_b_wrong
                .iter()
                .map(|d| d.index)
                .collect::<Vec<_>>(),
            vec![10]
        );
        assert_eq!(
            sets.b_right_a_wrong
                .iter()
                .map(|d| d.index)
                .collect::<Vec<_>>(),
            vec![13, 12]
        );
        assert_eq!((sets.a_accuracy, sets.b_accuracy), (0.5, 0.75));
    }
}
