//! JSON Schemas of endpoint messages, derived from their protobuf descriptors.
//!
//! [`endpoint_schema`] describes an endpoint's request and response in the proto3 JSON mapping,
//! the form `application/json` payloads take (pbjson). The schema is JSON Schema draft 2020-12:
//!
//! ```text
//! {
//!   "$schema": "https://json-schema.org/draft/2020-12/schema",
//!   "$id": "urn:kernel:jsonschema:com.example.pricing:1.4.2:quote",
//!   "title": "com.example.pricing.quote",
//!   "type": "object",
//!   "properties": { "request":  { "$ref": "#/$defs/com.example.pricing.v1.QuoteRequest" },
//!                   "response": { "$ref": "#/$defs/com.example.pricing.v1.QuoteResponse" } },
//!   "additionalProperties": false,
//!   "$defs": { "com.example.pricing.v1.QuoteRequest": { "type": "object", ... }, ... }
//! }
//! ```
//!
//! Every message and enum reachable from either side is defined once in `$defs` under its full
//! proto name, so a message that contains itself is a `$ref` to its own definition. Messages
//! and fields take their `description` from the `.proto` comments when the descriptor set has
//! source info (`kernel_proto::FILE_DESCRIPTOR_SET` has).
//!
//! The mapping. Each schema admits what our serialisers write and, where that is cheap, what
//! our parser also reads:
//!
//! ```text
//! proto                         written                schema also admits
//! message                       object, camelCase      the original field names; unknown fields
//! int64 uint64 (s)fixed64 ...   "123" (a string)       123 (a number)
//! int32 uint32 (s)fixed32 ...   123                    "123"
//! double float                  1.5                    "1.5", "NaN", "Infinity", "-Infinity"
//! bool / string                 true / "text"          -
//! bytes                         base64 string          URL-safe alphabet, no padding
//! enum                          "VALUE_NAME"           the value's number
//! repeated T                    [T, ...]               -
//! map<K, V>                     {"key": V, ...}        - (integer keys are decimal strings)
//! Timestamp / Duration          RFC 3339 / "1.5s"      -
//! wrappers (Int64Value, ...)    the wrapped scalar     null
//! Struct / ListValue / Value    object / array / any   -
//! Any                           {"@type": ..., ...}    -
//! ```
//!
//! Decisions:
//! - **No field is `required`** (except proto2 `required` fields): proto3 writes no field that
//!   holds its default, so any field may be absent. The fields of a `oneof` exclude each other
//!   (`dependentSchemas`).
//! - **Unknown fields are admitted** (no `additionalProperties: false` on messages): our parser
//!   skips them so that a newer peer's extra fields do not break an older one
//!   ([`docs/decisions.md`](https://github.com/kernel-platform/kernel/blob/main/docs/decisions.md)), and a validator must not be stricter than the service. Only the
//!   `{request, response}` envelope, which is ours, is closed.
//! - **`null` is not admitted** except where it is a value (wrappers, `Value`, `NullValue`):
//!   pbjson never writes it, and reads it for few field kinds.
//! - **Non-finite doubles**: proto3 writes `"NaN"` and `"Infinity"`; pbjson (through serde_json)
//!   writes `null`, which it cannot read back. The schema follows proto3.

mod comments;
mod kinds;

use std::collections::BTreeSet;

use prost_reflect::{
    Cardinality, DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor,
};
use serde_json::{Map, Value, json};

/// The JSON Schema dialect of every schema here: draft 2020-12.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// A schema could not be derived.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// No message of this full name is in the descriptor pool.
    #[error("no message {0:?} in the descriptor pool")]
    UnknownMessage(String),
    /// A descriptor set does not decode, or refers to types no set defines.
    #[error("invalid descriptor set: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
}

/// The descriptor pool of the platform's messages (`kernel_proto::FILE_DESCRIPTOR_SET`) and
/// of `extra`, encoded `google.protobuf.FileDescriptorSet`s (a service's own messages).
///
/// A set may import files of the platform's or of an earlier set. A file already in the pool
/// (by name: `kernel/platform/v1/health.proto`, `google/protobuf/timestamp.proto`) is skipped,
/// so sets that each carry their imports merge.
///
/// # Errors
///
/// [`SchemaError::Descriptors`] when a set does not decode or refers to a type that neither it
/// nor an earlier set defines.
pub fn pool(extra: &[&[u8]]) -> Result<DescriptorPool, SchemaError> {
    let mut pool = DescriptorPool::new();
    for set in std::iter::once(kernel_proto::FILE_DESCRIPTOR_SET).chain(extra.iter().copied()) {
        pool.decode_file_descriptor_set(set)?;
    }
    Ok(pool)
}

/// The JSON Schema (draft 2020-12) of one endpoint: an object with properties `request` and
/// `response`, each a `$ref` into `$defs` (or, for a well-known type, its inline schema), every
/// message and enum reachable from either defined once in `$defs` under its full proto name.
///
/// `request_type` and `response_type` are full message names (`kernel.platform.v1.StatsRequest`;
/// a leading `.` is ignored). The `$id` is `urn:kernel:jsonschema:<service>:<version>:<endpoint>`,
/// each part percent-encoded, and the `title` is `<service>.<endpoint>`. The module doc lists
/// the mapping and its decisions.
///
/// # Errors
///
/// [`SchemaError::UnknownMessage`] when `pool` has no message of either name.
pub fn endpoint_schema(
    pool: &DescriptorPool,
    service: &str,
    version: &str,
    endpoint: &str,
    request_type: &str,
    response_type: &str,
) -> Result<Value, SchemaError> {
    let request = message_named(pool, request_type)?;
    let response = message_named(pool, response_type)?;
    let mut definitions = Definitions::default();
    let request = definitions.element(Kind::Message(request));
    let response = definitions.element(Kind::Message(response));
    let id = [
        "urn:kernel:jsonschema",
        &encode(service),
        &encode(version),
        &encode(endpoint),
    ];
    Ok(json!({
        "$schema": DIALECT,
        "$id": id.join(":"),
        "title": format!("{service}.{endpoint}"),
        "description": format!(
            "The request and response of endpoint `{endpoint}` of service `{service}`{}, in the \
             proto3 JSON mapping.",
            if version.is_empty() { String::new() } else { format!(" version {version}") },
        ),
        "type": "object",
        "properties": { "request": request, "response": response },
        "additionalProperties": false,
        "$defs": definitions.finish(),
    }))
}

fn message_named(pool: &DescriptorPool, name: &str) -> Result<MessageDescriptor, SchemaError> {
    let full_name = name.strip_prefix('.').unwrap_or(name);
    pool.get_message_by_name(full_name)
        .ok_or_else(|| SchemaError::UnknownMessage(name.to_owned()))
}

/// `part` with every byte but ASCII letters, digits, `-`, `.`, `_` and `~` percent-encoded, so
/// that a `:` in a name cannot shift the parts of an `$id`.
fn encode(part: &str) -> String {
    part.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// A definition in `$defs`, waiting to be written.
enum Definition {
    Message(MessageDescriptor),
    Enum(EnumDescriptor),
}

/// The `$defs` of one schema: every message and enum referred to, each written once.
#[derive(Default)]
struct Definitions {
    /// Full names referred to so far: each is written, or waits in `pending`.
    referred: BTreeSet<String>,
    pending: Vec<Definition>,
    written: Map<String, Value>,
}

impl Definitions {
    /// A `$ref` to `name`'s definition, queued to be written the first time it is referred to.
    /// Writing waits for [`finish`](Self::finish), so a message that contains itself refers to
    /// its definition instead of recursing.
    fn refer(&mut self, name: &str, definition: impl FnOnce() -> Definition) -> Value {
        if self.referred.insert(name.to_owned()) {
            self.pending.push(definition());
        }
        json!({ "$ref": format!("#/$defs/{name}") })
    }

    /// Writes every pending definition, and those they refer to, and returns `$defs`.
    fn finish(mut self) -> Map<String, Value> {
        while let Some(definition) = self.pending.pop() {
            let (name, schema) = match definition {
                Definition::Message(message) => {
                    (message.full_name().to_owned(), self.message(&message))
                }
                Definition::Enum(enumeration) => (
                    enumeration.full_name().to_owned(),
                    enum_schema(&enumeration),
                ),
            };
            self.written.insert(name, schema);
        }
        self.written
    }

    /// The schema of one value of `kind`: a scalar's, a well-known type's, or a `$ref`.
    fn element(&mut self, kind: Kind) -> Value {
        match kind {
            Kind::Message(message) => kinds::well_known(message.full_name()).unwrap_or_else(|| {
                self.refer(message.full_name(), || Definition::Message(message.clone()))
            }),
            Kind::Enum(enumeration) if enumeration.full_name() == "google.protobuf.NullValue" => {
                json!({ "type": "null" })
            }
            Kind::Enum(enumeration) => self.refer(enumeration.full_name(), || {
                Definition::Enum(enumeration.clone())
            }),
            scalar => kinds::scalar(&scalar).expect("messages and enums are matched above"),
        }
    }

    fn message(&mut self, message: &MessageDescriptor) -> Value {
        let mut properties = Map::new();
        let mut original_names = Map::new();
        let mut required = Vec::new();
        for field in message.fields() {
            let schema = self.field(&field);
            if field.name() != field.json_name() {
                let alias = alias(message, &field, &schema);
                original_names.insert(format!("^{}$", field.name()), alias);
            }
            if field.cardinality() == Cardinality::Required {
                required.push(field.json_name().to_owned());
            }
            properties.insert(field.json_name().to_owned(), schema);
        }
        let mut schema = json!({ "type": "object", "properties": properties });
        if let Some(description) = comments::comment(&message.parent_file(), message.path()) {
            insert(&mut schema, "description", description);
        }
        if !original_names.is_empty() {
            insert(&mut schema, "patternProperties", original_names);
        }
        if !required.is_empty() {
            insert(&mut schema, "required", required);
        }
        let exclusive = exclusive_oneof_fields(message);
        if !exclusive.is_empty() {
            insert(&mut schema, "dependentSchemas", exclusive);
        }
        schema
    }

    fn field(&mut self, field: &FieldDescriptor) -> Value {
        let mut schema = match field.kind() {
            Kind::Message(entry) if field.is_map() => {
                let values = self.element(entry.map_entry_value_field().kind());
                let mut map = json!({ "type": "object", "additionalProperties": values });
                if let Some(keys) = kinds::map_key(&entry.map_entry_key_field().kind()) {
                    insert(&mut map, "propertyNames", keys);
                }
                map
            }
            kind if field.is_list() => json!({ "type": "array", "items": self.element(kind) }),
            kind => self.element(kind),
        };
        if let Some(description) = comments::comment(&field.parent_file(), field.path()) {
            insert(&mut schema, "description", description);
        }
        schema
    }
}

/// Sets `key` of `schema`, which is an object: every schema here is.
fn insert(schema: &mut Value, key: &str, value: impl Into<Value>) {
    if let Value::Object(object) = schema {
        object.insert(key.to_owned(), value.into());
    }
}

/// The schema of a field under its original name (`service_name` for `serviceName`), which
/// proto3 parsers also read: a `$ref` to the camelCase property when its name can stand in a
/// JSON pointer as it is, else a copy.
fn alias(message: &MessageDescriptor, field: &FieldDescriptor, schema: &Value) -> Value {
    let json_name = field.json_name();
    if json_name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
    {
        let pointer = format!("#/$defs/{}/properties/{json_name}", message.full_name());
        json!({ "$ref": pointer })
    } else {
        schema.clone()
    }
}

/// `dependentSchemas` that forbid the other fields of a `oneof` once one is present (proto3
/// `optional` fields are one-field oneofs, and excluded).
fn exclusive_oneof_fields(message: &MessageDescriptor) -> Map<String, Value> {
    let mut dependent = Map::new();
    for oneof in message.oneofs().filter(|oneof| !oneof.is_synthetic()) {
        let names: Vec<String> = oneof.fields().map(|f| f.json_name().to_owned()).collect();
        for name in &names {
            let others: Map<String, Value> = names
                .iter()
                .filter(|other| *other != name)
                .map(|other| (other.clone(), Value::Bool(false)))
                .collect();
            if !others.is_empty() {
                dependent.insert(name.clone(), json!({ "properties": others }));
            }
        }
    }
    dependent
}

/// An enum: its value names, which proto3 writes, and its numbers, which parsers also read.
/// The description lists the values that have comments.
fn enum_schema(enumeration: &EnumDescriptor) -> Value {
    let names = enumeration.values().map(|value| json!(value.name()));
    let numbers: BTreeSet<i32> = enumeration.values().map(|value| value.number()).collect();
    let mut schema = json!({
        "type": ["string", "integer"],
        "enum": names.chain(numbers.into_iter().map(Value::from)).collect::<Vec<_>>(),
    });
    let file = enumeration.parent_file();
    let values: Vec<String> = enumeration
        .values()
        .filter_map(|value| {
            let comment = comments::comment(&file, value.path())?;
            Some(format!(
                "- `{}` ({}): {comment}",
                value.name(),
                value.number()
            ))
        })
        .collect();
    let description = comments::comment(&file, enumeration.path())
        .into_iter()
        .chain((!values.is_empty()).then(|| values.join("\n")))
        .collect::<Vec<_>>()
        .join("\n\n");
    if !description.is_empty() {
        insert(&mut schema, "description", description);
    }
    schema
}

#[cfg(test)]
mod tests {
    use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

    use super::*;

    /// Every kind of field, with comments; compiled by protox with source info.
    const KINDS_PROTO: &str = r#"
syntax = "proto3";
package kernel.test.v1;

import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";

// One field of every kind.
message Kinds {
  // A 64-bit count.
  int64 count = 1;
  uint64 total = 2;
  int32 small = 3;
  bool flag = 4;
  double ratio = 5;
  bytes blob = 6;
  string text = 7;
  Colour colour = 8;
  Nested nested = 9;
  repeated Nested nested_list = 10;
  repeated string tags = 11;
  map<string, Nested> by_name = 12;
  map<int32, uint64> by_number = 13;
  Tree tree = 14;
  google.protobuf.Timestamp at = 15;
  google.protobuf.Int32Value maybe = 16;
  optional string nickname = 17;
  oneof side {
    string left = 18;
    int64 right = 19;
  }

  // A message inside another.
  message Nested {
    string name = 1;
  }
}

// A colour.
enum Colour {
  COLOUR_UNSPECIFIED = 0;
  // Like the sky.
  BLUE = 1;
  RED = 2;
}

// A tree: its children are trees.
message Tree {
  string label = 1;
  repeated Tree children = 2;
}
"#;

    /// Finds `kinds.proto` in [`KINDS_PROTO`].
    struct Source;

    impl FileResolver for Source {
        fn open_file(&self, name: &str) -> Result<File, protox::Error> {
            match name {
                "kinds.proto" => File::from_source(name, KINDS_PROTO),
                _ => Err(protox::Error::file_not_found(name)),
            }
        }
    }

    /// The platform's pool and `kinds.proto`, merged by [`pool`] as a service's set would be.
    fn kinds_pool() -> DescriptorPool {
        let mut resolver = ChainFileResolver::new();
        resolver.add(Source);
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_source_info(true).include_imports(true);
        compiler
            .open_file("kinds.proto")
            .expect("kinds.proto compiles");
        pool(&[&compiler.encode_file_descriptor_set()]).expect("the sets merge")
    }

    fn kinds_schema() -> Value {
        let pool = kinds_pool();
        endpoint_schema(
            &pool,
            "com.example.kinds",
            "1",
            "echo",
            "kernel.test.v1.Kinds",
            "kernel.test.v1.Tree",
        )
        .expect("both messages are in the pool")
    }

    fn definition<'a>(schema: &'a Value, name: &str) -> &'a Value {
        &schema["$defs"][name]
    }

    fn property<'a>(schema: &'a Value, message: &str, field: &str) -> &'a Value {
        &definition(schema, message)["properties"][field]
    }

    fn validates(schema: &Value, instance: Value) -> bool {
        jsonschema::draft202012::is_valid(schema, &instance)
    }

    /// Whether `request` is a valid request of the endpoint `schema` describes.
    fn accepts_request(schema: &Value, request: Value) -> bool {
        validates(schema, json!({ "request": request }))
    }

    #[test]
    fn the_envelope_names_the_endpoint_and_refers_to_both_messages() {
        let schema = kinds_schema();
        assert_eq!(schema["$schema"], DIALECT);
        assert_eq!(
            schema["$id"],
            "urn:kernel:jsonschema:com.example.kinds:1:echo"
        );
        assert_eq!(schema["title"], "com.example.kinds.echo");
        assert_eq!(
            schema["properties"]["request"]["$ref"],
            "#/$defs/kernel.test.v1.Kinds"
        );
        assert_eq!(
            schema["properties"]["response"]["$ref"],
            "#/$defs/kernel.test.v1.Tree"
        );
        assert!(jsonschema::meta::is_valid(&schema), "{schema:#}");
    }

    #[test]
    fn id_parts_are_percent_encoded() {
        let pool = kinds_pool();
        let schema = endpoint_schema(
            &pool,
            "a:b",
            "1 2",
            "c",
            "kernel.test.v1.Tree",
            ".kernel.test.v1.Tree",
        )
        .expect("a leading dot is ignored");
        assert_eq!(schema["$id"], "urn:kernel:jsonschema:a%3Ab:1%202:c");
    }

    #[test]
    fn unknown_messages_are_an_error() {
        let pool = kinds_pool();
        let missing = endpoint_schema(
            &pool,
            "s",
            "1",
            "e",
            "kernel.test.v1.Kinds",
            "kernel.test.v1.Missing",
        );
        assert!(
            matches!(missing, Err(SchemaError::UnknownMessage(name)) if name == "kernel.test.v1.Missing")
        );
        let an_enum = endpoint_schema(
            &pool,
            "s",
            "1",
            "e",
            "kernel.test.v1.Colour",
            "kernel.test.v1.Tree",
        );
        assert!(matches!(an_enum, Err(SchemaError::UnknownMessage(_))));
    }

    #[test]
    fn pool_rejects_a_set_that_does_not_decode() {
        assert!(matches!(
            pool(&[b"\xff\xff not a descriptor set"]),
            Err(SchemaError::Descriptors(_))
        ));
        let platform = pool(&[]).expect("the platform's set decodes");
        assert!(
            platform
                .get_message_by_name("kernel.platform.v1.HealthResponse")
                .is_some()
        );
    }

    #[test]
    fn scalars_use_camel_case_names_and_their_json_forms() {
        let schema = kinds_schema();
        let kinds = "kernel.test.v1.Kinds";
        assert_eq!(
            property(&schema, kinds, "count")["type"],
            json!(["string", "integer"])
        );
        assert_eq!(property(&schema, kinds, "total")["pattern"], "^[+]?[0-9]+$");
        assert_eq!(
            property(&schema, kinds, "small")["type"],
            json!(["integer", "string"])
        );
        assert_eq!(property(&schema, kinds, "flag")["type"], "boolean");
        assert_eq!(
            property(&schema, kinds, "ratio")["type"],
            json!(["number", "string"])
        );
        assert_eq!(
            property(&schema, kinds, "blob")["contentEncoding"],
            "base64"
        );
        assert_eq!(property(&schema, kinds, "text")["type"], "string");
        assert_eq!(property(&schema, kinds, "at")["format"], "date-time");
        assert_eq!(
            property(&schema, kinds, "maybe")["type"],
            json!(["integer", "string", "null"])
        );
        assert!(property(&schema, kinds, "nestedList").is_object());
        assert!(
            property(&schema, kinds, "nested_list").is_null(),
            "original names are not properties"
        );

        assert!(accepts_request(
            &schema,
            json!({ "count": "-5", "total": "7", "small": 3, "flag": true, "ratio": "NaN", "blob": "aGk=" })
        ));
        assert!(!accepts_request(&schema, json!({ "count": "five" })));
        assert!(!accepts_request(&schema, json!({ "flag": "yes" })));
        assert!(!accepts_request(&schema, json!({ "at": "yesterday" })));
    }

    #[test]
    fn original_field_names_are_read_too_and_unknown_fields_pass() {
        let schema = kinds_schema();
        assert!(accepts_request(
            &schema,
            json!({ "nested_list": [{ "name": "a" }], "by_name": {} })
        ));
        assert!(!accepts_request(
            &schema,
            json!({ "nested_list": [{ "name": 1 }] })
        ));
        assert!(accepts_request(
            &schema,
            json!({ "addedInAFutureVersion": 1 })
        ));
        assert!(
            !validates(&schema, json!({ "request": {}, "extra": {} })),
            "the envelope is closed"
        );
    }

    #[test]
    fn enums_are_names_or_numbers_with_value_comments() {
        let schema = kinds_schema();
        assert_eq!(
            property(&schema, "kernel.test.v1.Kinds", "colour")["$ref"],
            "#/$defs/kernel.test.v1.Colour"
        );
        let colour = definition(&schema, "kernel.test.v1.Colour");
        assert_eq!(
            colour["enum"],
            json!(["COLOUR_UNSPECIFIED", "BLUE", "RED", 0, 1, 2])
        );
        assert_eq!(
            colour["description"],
            "A colour.\n\n- `BLUE` (1): Like the sky."
        );
        assert!(accepts_request(&schema, json!({ "colour": "RED" })));
        assert!(accepts_request(&schema, json!({ "colour": 2 })));
        assert!(!accepts_request(&schema, json!({ "colour": "GREEN" })));
        assert!(!accepts_request(&schema, json!({ "colour": 3 })));
    }

    #[test]
    fn nested_and_repeated_messages_refer_to_one_definition() {
        let schema = kinds_schema();
        let kinds = "kernel.test.v1.Kinds";
        let nested_ref = json!("#/$defs/kernel.test.v1.Kinds.Nested");
        assert_eq!(property(&schema, kinds, "nested")["$ref"], nested_ref);
        assert_eq!(property(&schema, kinds, "nestedList")["type"], "array");
        assert_eq!(
            property(&schema, kinds, "nestedList")["items"]["$ref"],
            nested_ref
        );
        assert_eq!(property(&schema, kinds, "tags")["items"]["type"], "string");
        assert_eq!(
            definition(&schema, "kernel.test.v1.Kinds.Nested")["description"],
            "A message inside another."
        );
        let defined: Vec<&String> = schema["$defs"]
            .as_object()
            .expect("$defs is an object")
            .keys()
            .collect();
        assert_eq!(defined.len(), 4, "Kinds, Nested, Colour, Tree: {defined:?}");

        assert!(accepts_request(
            &schema,
            json!({ "nestedList": [{ "name": "a" }, {}] })
        ));
        assert!(!accepts_request(
            &schema,
            json!({ "nestedList": { "name": "a" } })
        ));
        assert!(!accepts_request(
            &schema,
            json!({ "nested": { "name": 5 } })
        ));
    }

    #[test]
    fn maps_are_objects_with_keys_of_the_key_kind() {
        let schema = kinds_schema();
        let by_name = property(&schema, "kernel.test.v1.Kinds", "byName");
        assert_eq!(by_name["type"], "object");
        assert_eq!(
            by_name["additionalProperties"]["$ref"],
            "#/$defs/kernel.test.v1.Kinds.Nested"
        );
        assert!(by_name.get("propertyNames").is_none());
        assert!(accepts_request(
            &schema,
            json!({ "byNumber": { "-1": "18446744073709551615" } })
        ));
        assert!(!accepts_request(
            &schema,
            json!({ "byNumber": { "one": "1" } })
        ));
        assert!(!accepts_request(
            &schema,
            json!({ "byNumber": { "1": "-1" } })
        ));
        assert!(!accepts_request(
            &schema,
            json!({ "byName": { "a": { "name": false } } })
        ));
    }

    #[test]
    fn a_message_that_contains_itself_refers_to_itself() {
        let schema = kinds_schema();
        let children = property(&schema, "kernel.test.v1.Tree", "children");
        assert_eq!(children["items"]["$ref"], "#/$defs/kernel.test.v1.Tree");
        let tree = json!({ "label": "root", "children": [{ "children": [{ "label": "leaf" }] }] });
        assert!(validates(&schema, json!({ "response": tree })));
        let bad = json!({ "children": [{ "children": [{ "label": 7 }] }] });
        assert!(!validates(&schema, json!({ "response": bad })));
    }

    #[test]
    fn oneof_fields_exclude_each_other_and_none_is_required() {
        let schema = kinds_schema();
        let kinds = definition(&schema, "kernel.test.v1.Kinds");
        assert!(kinds.get("required").is_none());
        assert!(
            kinds["dependentSchemas"].get("nickname").is_none(),
            "optional is a lone synthetic oneof"
        );
        assert!(accepts_request(
            &schema,
            json!({ "left": "l", "nickname": "n" })
        ));
        assert!(!accepts_request(
            &schema,
            json!({ "left": "l", "right": "1" })
        ));
    }

    #[test]
    fn comments_become_descriptions() {
        let schema = kinds_schema();
        assert_eq!(
            definition(&schema, "kernel.test.v1.Kinds")["description"],
            "One field of every kind."
        );
        assert_eq!(
            property(&schema, "kernel.test.v1.Kinds", "count")["description"],
            "A 64-bit count."
        );
        assert!(
            property(&schema, "kernel.test.v1.Kinds", "total")
                .get("description")
                .is_none()
        );
        assert_eq!(
            definition(&schema, "kernel.test.v1.Tree")["description"],
            "A tree: its children are trees."
        );
    }
}
