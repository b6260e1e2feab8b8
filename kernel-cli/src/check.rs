//! `kernel call --check`: the request and the response checked against the JSON Schema the
//! service's `jsonschema` endpoint publishes for the endpoint.
//!
//! The service answers, per endpoint, a draft 2020-12 schema of the envelope
//! `{"request": ..., "response": ...}` (kernel-server's `schema` module), so a request is
//! checked as `{"request": <it>}` and a response as `{"response": <it>}`.

use std::fmt;

use jsonschema::Validator;
use kernel_client::Client;
use kernel_proto::platform::{JsonSchemaRequest, JsonSchemaResponse};
use serde_json::{Value, json};

use crate::failure::Failure;

/// At most this many violations are reported (the first ones the validator finds).
const MAX_VIOLATIONS: usize = 10;
/// A violation's message is cut to this many characters (it quotes the offending value).
const MAX_MESSAGE: usize = 200;

/// The schema of one endpoint, ready to check either side.
#[derive(Debug)]
pub(crate) enum Check {
    /// The service publishes a schema for the endpoint.
    Schema(Box<Validator>),
    /// The service has no schema for the endpoint's messages (it lacks their descriptors):
    /// nothing can be checked; the text says why.
    Unavailable(String),
}

/// Which side of a call is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// The request, before it is sent.
    Request,
    /// The response, after it arrives.
    Response,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Request => "request",
            Side::Response => "response",
        }
    }
}

/// A request or response that does not match the endpoint's schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {side} does not match the schema of {service}.{endpoint}: {}", list(.violations))]
pub(crate) struct SchemaViolation {
    /// `request` or `response`.
    pub(crate) side: &'static str,
    /// The service called.
    pub(crate) service: String,
    /// The endpoint called.
    pub(crate) endpoint: String,
    /// What is wrong, and where.
    pub(crate) violations: Vec<Violation>,
    /// The response that does not match, when it goes into [`json`](Self::json) (with
    /// `--json`, the one document on stdout).
    pub(crate) response: Option<Value>,
}

/// One thing wrong with a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// Where, as a JSON pointer into the request or response (`/name`); empty for the whole.
    pub(crate) path: String,
    /// What, as the validator says it.
    pub(crate) message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "at {path}: {}", self.message)
    }
}

fn list(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl SchemaViolation {
    /// As JSON, for `--json`: `{"kind": "SCHEMA_VIOLATION", "side", "service", "endpoint",
    /// "violations": [{"path", "message"}]}`, and `"response"` if it is kept.
    pub(crate) fn json(&self) -> Value {
        let violations: Vec<_> = self
            .violations
            .iter()
            .map(|v| json!({"path": v.path, "message": v.message}))
            .collect();
        let mut value = json!({
            "kind": "SCHEMA_VIOLATION",
            "side": self.side,
            "service": self.service,
            "endpoint": self.endpoint,
            "violations": violations,
        });
        if let Some(response) = &self.response {
            value["response"] = response.clone();
        }
        value
    }
}

impl Check {
    /// Asks `service` for the schema of `endpoint` (its open `jsonschema` endpoint).
    ///
    /// # Errors
    /// The platform error of the `jsonschema` call (`NOT_FOUND` for an endpoint the service
    /// does not have), or [`Failure::Other`] if the answer is not a usable schema.
    pub(crate) async fn fetch(
        client: &Client,
        service: &str,
        endpoint: &str,
        session: Option<&str>,
    ) -> Result<Check, Failure> {
        let request = JsonSchemaRequest {
            endpoint: endpoint.to_owned(),
        };
        let call = client.call::<JsonSchemaResponse>(service, "jsonschema", &request);
        let answer = match session {
            Some(session) => call.session_id(session).await?,
            None => call.await?,
        };
        let schemas: Value = serde_json::from_str(&answer.jsonschema).map_err(|e| {
            Failure::other(format!(
                "{service} answered a jsonschema that is not JSON: {e}"
            ))
        })?;
        let Some(schema) = schemas.get(endpoint) else {
            return Err(Failure::other(format!(
                "{service} answered no schema for {endpoint}"
            )));
        };
        Check::from_schema(schema)
            .map_err(|e| Failure::other(format!("{service}'s schema of {endpoint}: {e}")))
    }

    /// The check for one endpoint's envelope schema.
    ///
    /// # Errors
    /// Why `schema` is not a usable JSON Schema.
    pub(crate) fn from_schema(schema: &Value) -> Result<Check, String> {
        if schema.get("properties").is_none() {
            // What a service answers for messages it has no descriptors of: anything goes.
            let why = schema
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("the service publishes no schema for it");
            return Ok(Check::Unavailable(why.to_owned()));
        }
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(schema)
            .map(|validator| Check::Schema(Box::new(validator)))
            .map_err(|e| format!("not a valid JSON Schema: {e}"))
    }

    /// Checks `value` as the `side` of a call to `service`.`endpoint`.
    ///
    /// # Errors
    /// [`SchemaViolation`] with the first violations found.
    pub(crate) fn check(
        &self,
        side: Side,
        service: &str,
        endpoint: &str,
        value: &Value,
    ) -> Result<(), SchemaViolation> {
        let Check::Schema(validator) = self else {
            return Ok(());
        };
        let instance = json!({ side.as_str(): value });
        let prefix = format!("/{}", side.as_str());
        let violations: Vec<Violation> = validator
            .iter_errors(&instance)
            .take(MAX_VIOLATIONS)
            .map(|error| {
                let path = error.instance_path().to_string();
                let path = path.strip_prefix(&prefix).unwrap_or(&path).to_owned();
                Violation {
                    path,
                    message: clip(&error.to_string()),
                }
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(SchemaViolation {
                side: side.as_str(),
                service: service.to_owned(),
                endpoint: endpoint.to_owned(),
                violations,
                response: None,
            })
        }
    }
}

/// `text` cut to [`MAX_MESSAGE`] characters, with `…` when cut.
fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The envelope schema of an endpoint whose request has one string field, as a service
    /// writes it.
    fn schema() -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "request": { "$ref": "#/$defs/Req" },
                "response": { "$ref": "#/$defs/Rsp" },
            },
            "additionalProperties": false,
            "$defs": {
                "Req": { "type": "object", "properties": { "name": { "type": "string" } } },
                "Rsp": { "type": "object", "properties": { "n": { "type": "integer" } } },
            },
        })
    }

    #[test]
    fn a_wrong_field_type_is_a_violation_at_its_path() {
        let check = Check::from_schema(&schema()).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            check
                .check(Side::Request, "s", "e", &json!({"name": "ada"}))
                .is_ok()
        );
        let Err(violation) = check.check(Side::Request, "s", "e", &json!({"name": 42})) else {
            panic!("a number for a string passed");
        };
        assert_eq!(violation.side, "request");
        assert_eq!(violation.violations[0].path, "/name");
        assert!(violation.violations[0].message.contains("string"));
        assert!(
            check
                .check(Side::Response, "s", "e", &json!({"n": "x"}))
                .is_err()
        );
    }

    #[test]
    fn a_schema_without_properties_checks_nothing() {
        let check = Check::from_schema(&json!({"description": "no schema: no descriptors"}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(&check, Check::Unavailable(why) if why.contains("no descriptors")));
        assert!(check.check(Side::Request, "s", "e", &json!(42)).is_ok());
    }

    #[test]
    fn long_messages_are_clipped() {
        let long = "x".repeat(1000);
        assert_eq!(clip(&long).chars().count(), MAX_MESSAGE + 1);
        assert_eq!(clip("short"), "short");
    }
}
