//! Checking decoded data (a JSON object) against a catalog entry.

use serde_json::{Map, Value};

use crate::{CatalogError, EventSpec, Kind, Result};

/// Checks every field the catalog lists for `spec`; extra fields are allowed.
pub(crate) fn check_object(spec: &EventSpec, data: &Map<String, Value>) -> Result<()> {
    for field in spec.fields {
        match data.get(field.name) {
            None if field.required => return Err(CatalogError::missing(spec.event_type, field.name)),
            None => {}
            Some(value) if fits(field.kind, value) => {
                if let (Some(format), Some(text)) = (field.format, value.as_str())
                    && !format.fits(text)
                {
                    return Err(CatalogError::wrong_type(
                        spec.event_type,
                        field.name,
                        format.expected(),
                        describe(value),
                    ));
                }
            }
            Some(value) => {
                return Err(CatalogError::wrong_type(
                    spec.event_type,
                    field.name,
                    field.kind.expected(),
                    describe(value),
                ));
            }
        }
    }
    Ok(())
}

/// Whether `value` is a value of `kind`.
pub(crate) fn fits(kind: Kind, value: &Value) -> bool {
    match kind {
        Kind::String => value.as_str().is_some_and(|s| !s.is_empty()),
        Kind::Money => value.as_f64().is_some_and(|x| x >= 0.0),
        Kind::Number => value.is_number(),
        Kind::Integer => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|x| x.is_finite() && x.fract() == 0.0)
        }
        Kind::Timestamp => value.as_str().is_some_and(|s| s.parse::<jiff::Timestamp>().is_ok()),
        Kind::Bool => value.is_boolean(),
    }
}

/// Longest value quoted in an error message, in characters.
const SHOWN: usize = 40;

/// A short rendering of a value for error messages: `"12"`, `12`, `null`, `an object`.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Object(_) => "an object".into(),
        Value::Array(_) => "an array".into(),
        Value::String(s) if s.chars().count() > SHOWN => {
            let cut: String = s.chars().take(SHOWN).collect();
            format!("{}...", Value::String(cut))
        }
        other => other.to_string(),
    }
}

/// What kind of JSON value this is, for "expected an object, got ...".
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds() {
        let cases = [
            (Kind::String, json!("x"), true),
            (Kind::String, json!(""), false),
            (Kind::String, json!(1), false),
            (Kind::Money, json!(0), true),
            (Kind::Money, json!(12500.5), true),
            (Kind::Money, json!(-0.01), false),
            (Kind::Money, json!("12"), false),
            (Kind::Number, json!(-3.5), true),
            (Kind::Number, json!(null), false),
            (Kind::Integer, json!(3), true),
            (Kind::Integer, json!(3.0), true),
            (Kind::Integer, json!(3.5), false),
            (Kind::Integer, json!(u64::MAX), true),
            (Kind::Timestamp, json!("2026-11-21T10:00:00Z"), true),
            (Kind::Timestamp, json!("2026-11-21T10:00:00.123+01:00"), true),
            (Kind::Timestamp, json!("2026-11-21"), false),
            (Kind::Timestamp, json!("2026-11-21T10:00:00"), false),
            (Kind::Timestamp, json!(1_700_000_000), false),
            (Kind::Bool, json!(false), true),
            (Kind::Bool, json!("true"), false),
        ];
        for (kind, value, ok) in cases {
            assert_eq!(fits(kind, &value), ok, "{kind:?} {value}");
        }
    }

    #[test]
    fn long_values_are_cut() {
        let shown = describe(&json!("x".repeat(100)));
        assert!(shown.len() < 50 && shown.ends_with("\"..."), "{shown}");
        assert_eq!(describe(&json!({"a": 1})), "an object");
        assert_eq!(describe(&json!("12")), "\"12\"");
    }
}
