use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::error::{Error, Result};

/// Parses a JSON request body: unreadable JSON is a 400, a readable body with a wrong or
/// unknown field is a 422 naming the field's path (e.g. `training.optimizer.lr`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            Category::Data => {
                let message = strip_position(&inner.to_string());
                let field = if path == "." {
                    "body".to_string()
                } else {
                    path
                };
                Error::invalid(with_unknown_field(field, &message), message)
            }
            Category::Syntax | Category::Eof | Category::Io => {
                Error::bad_request(format!("malformed JSON: {inner}"))
            }
        }
    })?;
    deserializer
        .end()
        .map_err(|err| Error::bad_request(format!("malformed JSON: {err}")))?;
    Ok(value)
}

/// Inside internally tagged enums (`{"kind": ...}`) serde reports an unknown field at the
/// enum's path; this appends the field's name, so `training.schedule` becomes
/// `training.schedule.gamma`.
fn with_unknown_field(path: String, message: &str) -> String {
    let Some(name) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    else {
        return path;
    };
    if path == "body" {
        name.to_string()
    } else if path.rsplit('.').next() == Some(name) {
        path
    } else {
        format!("{path}.{name}")
    }
}

// serde_json appends " at line 1 column 57" to data errors; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        lr: f64,
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        let err = parse_json::<Outer>(b"{\"inner\": ").unwrap_err();
        assert!(matches!(err, Error::BadRequest { .. }), "{err:?}");
    }

    #[test]
    fn a_wrong_type_names_the_nested_field() {
        let err = parse_json::<Outer>(br#"{"inner": {"lr": "fast"}}"#).unwrap_err();
        match err {
            Error::Invalid { field, .. } => assert_eq!(field, "inner.lr"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn an_unknown_field_is_named() {
        let err = parse_json::<Outer>(br#"{"inner": {"lr": 1, "momentum": 2}}"#).unwrap_err();
        match err {
            Error::Invalid { field, message } => {
                assert_eq!(field, "inner.momentum");
                assert!(message.contains("unknown field"), "{message}");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
}
