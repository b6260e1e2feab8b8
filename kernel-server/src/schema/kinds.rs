//! Schemas of the proto3 JSON forms of scalar kinds, map keys and well-known types.
//!
//! Each schema admits the form our serialisers (pbjson) write and the other forms our parser
//! reads: a number field also reads a decimal string, a 64-bit integer (written as a string)
//! also reads a JSON number. `pattern` constrains only strings and `minimum`/`maximum` only
//! numbers, so one schema with a `type` list covers both forms.

use prost_reflect::Kind;
use serde_json::{Value, json};

/// A signed integer as a string (pbjson parses it with `str::parse`, which takes a sign).
const SIGNED: &str = "^[+-]?[0-9]+$";
/// An unsigned integer as a string.
const UNSIGNED: &str = "^[+]?[0-9]+$";
/// A floating-point number as a string, including proto3's `NaN`, `Infinity` and `-Infinity`.
const FLOAT: &str = r"^(NaN|[+-]?Infinity|[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)$";
/// Base64, standard or URL-safe alphabet, padded or not: pbjson reads all four.
const BASE64: &str = "^[A-Za-z0-9+/_-]*={0,2}$";
/// RFC 3339 date and time with an offset; pbjson writes `Z`.
const TIMESTAMP: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$";
/// Seconds with up to nine fractional digits and an `s` suffix, e.g. `1.500s`.
const DURATION: &str = r"^-?[0-9]+(\.[0-9]{1,9})?s$";

/// The schema of a scalar kind; `None` for messages and enums, which the caller defines.
pub(super) fn scalar(kind: &Kind) -> Option<Value> {
    Some(match kind {
        Kind::Double | Kind::Float => json!({ "type": ["number", "string"], "pattern": FLOAT }),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => json!({
            "type": ["integer", "string"], "pattern": SIGNED,
            "minimum": i32::MIN, "maximum": i32::MAX,
        }),
        Kind::Uint32 | Kind::Fixed32 => json!({
            "type": ["integer", "string"], "pattern": UNSIGNED,
            "minimum": 0, "maximum": u32::MAX,
        }),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => json!({
            "type": ["string", "integer"], "pattern": SIGNED,
            "minimum": i64::MIN, "maximum": i64::MAX,
        }),
        Kind::Uint64 | Kind::Fixed64 => json!({
            "type": ["string", "integer"], "pattern": UNSIGNED,
            "minimum": 0, "maximum": u64::MAX,
        }),
        Kind::Bool => json!({ "type": "boolean" }),
        Kind::String => json!({ "type": "string" }),
        Kind::Bytes => json!({ "type": "string", "contentEncoding": "base64", "pattern": BASE64 }),
        Kind::Message(_) | Kind::Enum(_) => return None,
    })
}

/// The `propertyNames` schema of a map with keys of `kind`: JSON object keys are strings, so
/// integer keys are decimal strings and bool keys `"true"` or `"false"`. `None` for string
/// keys, which take any name.
pub(super) fn map_key(kind: &Kind) -> Option<Value> {
    match kind {
        Kind::Int32
        | Kind::Sint32
        | Kind::Sfixed32
        | Kind::Int64
        | Kind::Sint64
        | Kind::Sfixed64 => Some(json!({ "pattern": SIGNED })),
        Kind::Uint32 | Kind::Fixed32 | Kind::Uint64 | Kind::Fixed64 => {
            Some(json!({ "pattern": UNSIGNED }))
        }
        Kind::Bool => Some(json!({ "enum": ["true", "false"] })),
        _ => None,
    }
}

/// The schema of a well-known type that the proto3 JSON mapping writes in a form of its own;
/// `None` for any other message, which is an object of its fields.
pub(super) fn well_known(full_name: &str) -> Option<Value> {
    let wrapped = |kind: Kind| scalar(&kind).map(nullable);
    match full_name {
        "google.protobuf.Timestamp" => Some(json!({
            "type": "string", "format": "date-time", "pattern": TIMESTAMP,
            "description": "An RFC 3339 date and time, e.g. `2026-01-02T03:04:05.678Z`.",
        })),
        "google.protobuf.Duration" => Some(json!({
            "type": "string", "pattern": DURATION,
            "description": "Seconds with an `s` suffix, e.g. `1.5s`.",
        })),
        "google.protobuf.FieldMask" => Some(json!({
            "type": "string",
            "description": "Comma-separated field paths in lowerCamelCase, e.g. `user.displayName,photo`.",
        })),
        "google.protobuf.Struct" => Some(json!({ "type": "object" })),
        "google.protobuf.ListValue" => Some(json!({ "type": "array" })),
        "google.protobuf.Value" => Some(json!({ "description": "Any JSON value." })),
        "google.protobuf.Empty" => Some(json!({ "type": "object", "maxProperties": 0 })),
        "google.protobuf.Any" => Some(json!({
            "type": "object",
            "properties": { "@type": { "type": "string" } },
            "required": ["@type"],
            "description": "A message of the type `@type` names, its fields beside `@type` (or, \
                            for a type with a JSON form of its own, in `value`).",
        })),
        "google.protobuf.DoubleValue" => wrapped(Kind::Double),
        "google.protobuf.FloatValue" => wrapped(Kind::Float),
        "google.protobuf.Int64Value" => wrapped(Kind::Int64),
        "google.protobuf.UInt64Value" => wrapped(Kind::Uint64),
        "google.protobuf.Int32Value" => wrapped(Kind::Int32),
        "google.protobuf.UInt32Value" => wrapped(Kind::Uint32),
        "google.protobuf.BoolValue" => wrapped(Kind::Bool),
        "google.protobuf.StringValue" => wrapped(Kind::String),
        "google.protobuf.BytesValue" => wrapped(Kind::Bytes),
        _ => None,
    }
}

/// `schema`, also admitting `null`: a wrapper's JSON form, where null means "not set".
fn nullable(mut schema: Value) -> Value {
    if let Some(types) = schema.get_mut("type") {
        let mut list = match types.take() {
            Value::Array(list) => list,
            single => vec![single],
        };
        list.push(json!("null"));
        *types = Value::Array(list);
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validates(schema: &Value, instance: Value) -> bool {
        jsonschema::draft202012::is_valid(schema, &instance)
    }

    #[test]
    fn int64_is_written_as_a_string_and_read_as_either() {
        let int64 = scalar(&Kind::Int64).expect("int64 is a scalar");
        assert!(validates(&int64, json!("-9223372036854775808")));
        assert!(validates(&int64, json!(42)));
        assert!(!validates(&int64, json!("4.2")));
        assert!(!validates(&int64, json!(4.2)));
        assert!(!validates(&int64, json!(true)));

        let uint64 = scalar(&Kind::Uint64).expect("uint64 is a scalar");
        assert!(validates(&uint64, json!("18446744073709551615")));
        assert!(!validates(&uint64, json!("-1")));
        assert!(!validates(&uint64, json!(-1)));
    }

    #[test]
    fn int32_is_a_bounded_number() {
        let int32 = scalar(&Kind::Int32).expect("int32 is a scalar");
        assert!(validates(&int32, json!(-2_147_483_648_i64)));
        assert!(!validates(&int32, json!(2_147_483_648_i64)));
        assert!(validates(&int32, json!("7")));
        let uint32 = scalar(&Kind::Fixed32).expect("fixed32 is a scalar");
        assert!(!validates(&uint32, json!(-1)));
    }

    #[test]
    fn double_takes_numbers_and_the_non_finite_names() {
        let double = scalar(&Kind::Double).expect("double is a scalar");
        for ok in [
            json!(1.5),
            json!(-3),
            json!("NaN"),
            json!("-Infinity"),
            json!("1e-3"),
        ] {
            assert!(validates(&double, ok.clone()), "{ok} should be a double");
        }
        for bad in [json!("fast"), json!(null), json!(false)] {
            assert!(
                !validates(&double, bad.clone()),
                "{bad} should not be a double"
            );
        }
    }

    #[test]
    fn bool_string_and_bytes() {
        let boolean = scalar(&Kind::Bool).expect("bool is a scalar");
        assert!(validates(&boolean, json!(true)));
        assert!(!validates(&boolean, json!("true")));
        let string = scalar(&Kind::String).expect("string is a scalar");
        assert!(!validates(&string, json!(1)));
        let bytes = scalar(&Kind::Bytes).expect("bytes is a scalar");
        assert!(validates(&bytes, json!("aGk+Pz8=")));
        assert!(validates(&bytes, json!("aGk-Pz8")));
        assert!(!validates(&bytes, json!("not base64!")));
    }

    #[test]
    fn map_keys_are_strings_of_the_key_kind() {
        assert_eq!(map_key(&Kind::String), None);
        let int_keys = json!({ "type": "object", "propertyNames": map_key(&Kind::Sint64) });
        assert!(validates(&int_keys, json!({ "-3": 1 })));
        assert!(!validates(&int_keys, json!({ "three": 1 })));
        let bool_keys = json!({ "type": "object", "propertyNames": map_key(&Kind::Bool) });
        assert!(!validates(&bool_keys, json!({ "yes": 1 })));
    }

    #[test]
    fn well_known_types_have_their_json_forms() {
        let timestamp = well_known("google.protobuf.Timestamp").expect("Timestamp is well known");
        assert!(validates(&timestamp, json!("2026-01-02T03:04:05.678Z")));
        assert!(!validates(&timestamp, json!("yesterday")));
        let duration = well_known("google.protobuf.Duration").expect("Duration is well known");
        assert!(validates(&duration, json!("-1.5s")));
        assert!(!validates(&duration, json!(1.5)));
        let wrapper = well_known("google.protobuf.Int64Value").expect("Int64Value is well known");
        assert!(validates(&wrapper, json!("5")));
        assert!(validates(&wrapper, json!(null)));
        assert!(!validates(&wrapper, json!({ "value": "5" })));
        let value = well_known("google.protobuf.Value").expect("Value is well known");
        assert!(validates(&value, json!([1, "two", null])));
        assert_eq!(well_known("kernel.platform.v1.Latency"), None);
    }
}
