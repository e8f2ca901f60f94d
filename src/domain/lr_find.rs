//! `POST /v1/lr-finder`'s body: a job spec to test, and how to run the range test.

use serde_json::Value;

use super::{JobSpec, parse_job_submission, parse_json};
use crate::error::{Error, Result};
use engine::LrFindSettings;

/// A range test asked for.
#[derive(Clone, Debug)]
pub struct LrFindRequest {
    /// The job spec whose model, data and optimizer are tested; its rate is not used.
    pub spec: JobSpec,
    /// The range and the stopping rule.
    pub settings: LrFindSettings,
}

/// Parses `{"spec": {...}, "min_lr": ..., "max_lr": ..., "steps": ..., "stop_factor": ...,
/// "smoothing": ...}`: a 400 for malformed JSON, a 422 naming the field (`spec.model.depth`,
/// `max_lr`) for a wrong one.
pub fn parse_lr_find_request(bytes: &[u8]) -> Result<LrFindRequest> {
    let value: Value = parse_json(bytes)?;
    let Value::Object(mut fields) = value else {
        return Err(Error::invalid(
            "body",
            "not an object; valid: {\"spec\": a job spec, \"min_lr\", \"max_lr\", \"steps\", \"stop_factor\", \"smoothing\"}",
        ));
    };
    let spec = fields.remove("spec").ok_or_else(|| {
        Error::invalid(
            "spec",
            "missing; valid: a job spec as POST /v1/jobs takes it",
        )
    })?;
    let spec_bytes =
        serde_json::to_vec(&spec).map_err(|err| Error::internal("encoding a spec", err))?;
    // The rate is what the test looks for, so "auto" (or any rate) is accepted and ignored.
    let spec = parse_job_submission(&spec_bytes)
        .map_err(|err| match err {
            Error::Invalid { field, message } => Error::Invalid {
                field: if field == "body" {
                    "spec".into()
                } else {
                    format!("spec.{field}")
                },
                message,
            },
            other => other,
        })?
        .spec;
    let settings_bytes = serde_json::to_vec(&Value::Object(fields))
        .map_err(|err| Error::internal("encoding settings", err))?;
    let settings: LrFindSettings = parse_json(&settings_bytes)?;
    settings.validate()?;
    Ok(LrFindRequest { spec, settings })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> String {
        match parse_lr_find_request(body.as_bytes()) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("{body}: {other:?}"),
        }
    }

    const SPEC: &str =
        r#"{"dataset": "digits", "model": {"kind": "mlp", "depth": 1, "width": 32}}"#;

    #[test]
    fn defaults_are_those_of_fastai() {
        let request = parse_lr_find_request(format!(r#"{{"spec": {SPEC}}}"#).as_bytes()).unwrap();
        assert_eq!(request.settings, LrFindSettings::default());
        assert_eq!(
            (request.settings.min_lr, request.settings.max_lr),
            (1e-7, 10.0)
        );
    }

    #[test]
    fn a_wrong_field_is_named_where_it_is() {
        assert_eq!(field_of("{}"), "spec");
        assert_eq!(field_of("[]"), "body");
        assert_eq!(
            field_of(r#"{"spec": {"dataset": "digits", "model": {"kind": "mlp"}, "epochs": 3}}"#),
            "spec.epochs"
        );
        assert_eq!(
            field_of(&format!(r#"{{"spec": {SPEC}, "max_lr": 1e-9}}"#)),
            "max_lr"
        );
        assert_eq!(
            field_of(&format!(r#"{{"spec": {SPEC}, "steps": "many"}}"#)),
            "steps"
        );
        assert_eq!(
            field_of(&format!(r#"{{"spec": {SPEC}, "lr_max": 1}}"#)),
            "lr_max"
        );
    }
}
