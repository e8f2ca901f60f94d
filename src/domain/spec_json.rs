//! A job spec from a request body: the JSON rules the engine's spec types cannot state
//! themselves (every `kind` a string, objects never written as lists, `"lr": "auto"`), then
//! serde.

use super::{JobSpec, parse_json};
use crate::error::{Error, Result};

/// A submitted job spec, and whether its learning rate is left to a range test.
#[derive(Clone, Debug)]
pub struct JobSubmission {
    /// The spec; with `lr_auto`, its rate is the optimizer's default until the test runs.
    pub spec: JobSpec,
    /// The spec said `"training": {"optimizer": {"lr": "auto"}}`.
    pub lr_auto: bool,
}

impl From<JobSpec> for JobSubmission {
    fn from(spec: JobSpec) -> Self {
        JobSubmission {
            spec,
            lr_auto: false,
        }
    }
}

const LR_POINTER: &str = "/training/optimizer/lr";

/// Parses a job spec whose `training.optimizer.lr` may be `"auto"`.
pub fn parse_job_submission(bytes: &[u8]) -> Result<JobSubmission> {
    let mut value: serde_json::Value = parse_json(bytes)?;
    let lr_auto = match value.pointer(LR_POINTER) {
        Some(serde_json::Value::String(text)) if text == "auto" => true,
        Some(serde_json::Value::String(text)) => {
            return Err(Error::invalid(
                "training.optimizer.lr",
                format!(
                    "'{text}' is not a rate; valid: a number with 0 < lr <= 10, or \"auto\" to let a learning-rate range test choose it"
                ),
            ));
        }
        _ => false,
    };
    if lr_auto
        && let Some(optimizer) = value
            .pointer_mut("/training/optimizer")
            .and_then(|o| o.as_object_mut())
    {
        // The optimizer's default rate stands in until the test has chosen.
        optimizer.remove("lr");
    }
    let bytes =
        serde_json::to_vec(&value).map_err(|err| Error::internal("encoding a spec", err))?;
    Ok(JobSubmission {
        spec: parse_job_spec(&bytes)?,
        lr_auto,
    })
}

/// Parses a job spec from a JSON body: a 400 for malformed JSON, a 422 naming the field
/// for a wrong or unknown one (including a `kind` that is not a string).
pub fn parse_job_spec(bytes: &[u8]) -> Result<JobSpec> {
    let value: serde_json::Value = parse_json(bytes)?;
    string_kinds(&value, "")?;
    // serde ignores extra fields next to the tag of a unit variant, even with
    // `deny_unknown_fields`; the initializations without parameters are those.
    if let Some(init) = value.pointer("/model/init").and_then(|v| v.as_object())
        && init
            .get("kind")
            .and_then(|k| k.as_str())
            .is_some_and(|k| ["kaiming", "xavier", "torch_default"].contains(&k))
        && let Some(extra) = init.keys().find(|key| *key != "kind")
    {
        return Err(Error::invalid(
            format!("model.init.{extra}"),
            format!(
                "unknown field `{extra}`: this kind takes no parameters (only `normal` has `std`)"
            ),
        ));
    }
    let spec: JobSpec = parse_json(bytes)?;
    let parsed =
        serde_json::to_value(&spec).map_err(|err| Error::internal("encoding a spec", err))?;
    no_lists_for_objects(&value, &parsed, "")?;
    Ok(spec)
}

/// Every `kind` in a spec is a string. serde reads an internally tagged enum's tag as a
/// variant name or as the variant's index, so without this `{"kind": 0}` would quietly mean
/// the first variant.
fn string_kinds(value: &serde_json::Value, path: &str) -> Result<()> {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if key == "kind" && !value.is_string() {
                    return Err(Error::invalid(
                        at,
                        format!("{value} is not a kind; valid: a kind's name as a string"),
                    ));
                }
                string_kinds(value, &at)?;
            }
            Ok(())
        }
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| string_kinds(item, &format!("{path}[{i}]"))),
        _ => Ok(()),
    }
}

/// serde also reads a struct from a JSON list of its fields in order (`"preprocessing": [null,
/// null]`); the contract says objects, so a list where the parsed spec has an object is a 422.
fn no_lists_for_objects(
    given: &serde_json::Value,
    parsed: &serde_json::Value,
    path: &str,
) -> Result<()> {
    use serde_json::Value;
    match (given, parsed) {
        (Value::Array(_), Value::Object(_)) => Err(Error::invalid(
            path,
            "a list where an object is expected; write the fields by name",
        )),
        (Value::Object(given), Value::Object(parsed)) => {
            for (key, value) in given {
                if let Some(inner) = parsed.get(key) {
                    let at = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    no_lists_for_objects(value, inner, &at)?;
                }
            }
            Ok(())
        }
        (Value::Array(given), Value::Array(parsed)) => given
            .iter()
            .zip(parsed)
            .enumerate()
            .try_for_each(|(i, (g, p))| no_lists_for_objects(g, p, &format!("{path}[{i}]"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
