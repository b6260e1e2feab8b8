//! The JSON Schemas derived from the platform's descriptors are valid draft 2020-12 schemas,
//! accept the JSON our serialisers write for real messages, and reject wrong instances.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

use jsonschema::Validator;
use kernel_proto::platform::{
    EndpointStats, HealthCheck, HealthPriority, HealthResponse, HealthStatus, Latency,
    StatsResponse,
};
use kernel_server::schema;
use serde_json::{Value, json};

/// The schema of a `stats` endpoint, checked against the draft 2020-12 meta-schema.
fn stats_schema() -> Value {
    let pool = schema::pool(&[]).unwrap();
    let schema = schema::endpoint_schema(
        &pool,
        "com.example.greeter",
        "1.4.2",
        "stats",
        "kernel.platform.v1.StatsRequest",
        "kernel.platform.v1.StatsResponse",
    )
    .unwrap();
    jsonschema::meta::validate(&schema).unwrap();
    schema
}

/// The schema of a `health` endpoint, checked against the draft 2020-12 meta-schema.
fn health_schema() -> Value {
    let pool = schema::pool(&[]).unwrap();
    let schema = schema::endpoint_schema(
        &pool,
        "com.example.greeter",
        "1.4.2",
        "health",
        "kernel.platform.v1.HealthRequest",
        "kernel.platform.v1.HealthResponse",
    )
    .unwrap();
    jsonschema::meta::validate(&schema).unwrap();
    schema
}

/// A validator that also checks `format` (the timestamp's `date-time`), as strict tools do.
fn validator(schema: &Value) -> Validator {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap()
}

/// The errors of validating `response` as the endpoint's response, as text for the message
/// of a failed assertion.
fn response_errors(validator: &Validator, response: Value) -> Vec<String> {
    let instance = json!({ "response": response });
    validator
        .iter_errors(&instance)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect()
}

fn health() -> HealthResponse {
    HealthResponse {
        service_name: "com.example.greeter".into(),
        instance_id: "instance-1".into(),
        healthy: false,
        checks: vec![
            HealthCheck {
                id: "kernel.resource.capacity".into(),
                status: HealthStatus::Healthy as i32,
                priority: HealthPriority::Pager as i32,
                timestamp_unix_ms: 1_767_225_600_000,
                error_message: String::new(),
                measurements: [("inflight".to_owned(), "3".to_owned())].into(),
            },
            HealthCheck {
                id: "com.example.greeter.db".into(),
                status: HealthStatus::Unhealthy as i32,
                priority: HealthPriority::Email as i32,
                timestamp_unix_ms: -1,
                error_message: "connection refused".into(),
                measurements: Default::default(),
            },
        ],
    }
}

fn stats() -> StatsResponse {
    let latency = Latency {
        mean_ms: 12.5,
        p95_ms: 40.0,
        p99_ms: 95.25,
    };
    StatsResponse {
        instance_id: "instance-1".into(),
        service_name: "com.example.greeter".into(),
        service_version: "1.4.2".into(),
        uptime_ms: u64::MAX,
        endpoints: vec![EndpointStats {
            name: "hello".into(),
            success_count: 1_000,
            error_count: 2,
            latency: Some(latency),
            sla: Some(Latency {
                mean_ms: 100.0,
                p95_ms: 200.0,
                p99_ms: 0.0,
            }),
        }],
        error_counts: [("kernel.server.capacity".to_owned(), 2)].into(),
        status: "RUNNING".into(),
        hostname: "host-1".into(),
    }
}

#[test]
fn schemas_are_valid_draft_2020_12_and_name_the_endpoint() {
    let schema = stats_schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["title"], "com.example.greeter.stats");
    assert_eq!(
        schema["$id"],
        "urn:kernel:jsonschema:com.example.greeter:1.4.2:stats"
    );
    let defs = schema["$defs"].as_object().unwrap();
    for name in [
        "kernel.platform.v1.StatsRequest",
        "kernel.platform.v1.StatsResponse",
        "kernel.platform.v1.EndpointStats",
        "kernel.platform.v1.Latency",
    ] {
        assert!(defs.contains_key(name), "{name} missing from $defs");
    }
    assert_eq!(
        defs["kernel.platform.v1.Latency"]["description"],
        "A latency summary in milliseconds."
    );
    let health = health_schema();
    assert!(health["$defs"]["kernel.platform.v1.HealthStatus"]["enum"].is_array());
}

#[test]
fn a_meta_schema_check_catches_an_invalid_schema() {
    // The meta-validation above is not vacuous: a broken schema fails it.
    let mut schema = stats_schema();
    schema["$defs"]["kernel.platform.v1.Latency"]["type"] = json!("decimal");
    assert!(jsonschema::meta::validate(&schema).is_err());
}

#[test]
fn real_health_responses_validate() {
    let validator = validator(&health_schema());
    let response = serde_json::to_value(health()).unwrap();
    // The JSON is the proto3 mapping: camelCase, enums by name, int64 as a string.
    assert_eq!(response["checks"][0]["status"], "HEALTHY");
    assert_eq!(response["checks"][0]["timestampUnixMs"], "1767225600000");
    let errors = response_errors(&validator, response);
    assert!(errors.is_empty(), "{errors:#?}");
    let empty = serde_json::to_value(HealthResponse::default()).unwrap();
    assert!(response_errors(&validator, empty).is_empty());
    assert!(validator.is_valid(&json!({ "request": {} })));
}

#[test]
fn real_stats_responses_validate() {
    let validator = validator(&stats_schema());
    let response = serde_json::to_value(stats()).unwrap();
    assert_eq!(response["uptimeMs"], "18446744073709551615");
    let errors = response_errors(&validator, response);
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn what_parsers_also_read_validates() {
    let validator = validator(&health_schema());
    let response = json!({
        "service_name": "com.example.greeter",
        "checks": [{ "status": 2, "priority": "WARNING", "timestamp_unix_ms": 5 }],
    });
    // pbjson reads this too: the schema must not be stricter than the service.
    let parsed: HealthResponse = serde_json::from_value(response.clone()).unwrap();
    assert_eq!(parsed.checks[0].status, HealthStatus::Unhealthy as i32);
    let errors = response_errors(&validator, response);
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn wrong_instances_are_rejected() {
    let health = validator(&health_schema());
    let stats = validator(&stats_schema());
    let good_health = serde_json::to_value(self::health()).unwrap();
    let good_stats = serde_json::to_value(self::stats()).unwrap();

    let mut wrong = good_health.clone();
    wrong["healthy"] = json!("false");
    assert!(
        !response_errors(&health, wrong).is_empty(),
        "a bool as a string"
    );

    let mut wrong = good_health.clone();
    wrong["checks"][0]["status"] = json!("SORT_OF_HEALTHY");
    assert!(
        !response_errors(&health, wrong).is_empty(),
        "an unknown enum name"
    );

    let mut wrong = good_health.clone();
    wrong["checks"][1]["measurements"]["inflight"] = json!(3);
    assert!(
        !response_errors(&health, wrong).is_empty(),
        "a map value of the wrong type"
    );

    let mut wrong = good_health.clone();
    wrong["checks"][0]["timestampUnixMs"] = json!("yesterday");
    assert!(
        !response_errors(&health, wrong).is_empty(),
        "an int64 that is no integer"
    );

    let mut wrong = good_health;
    wrong["checks"] = json!({ "id": "not a list" });
    assert!(
        !response_errors(&health, wrong).is_empty(),
        "an object for a list"
    );

    let mut wrong = good_stats.clone();
    wrong["endpoints"][0]["latency"]["p95Ms"] = json!("slow");
    assert!(
        !response_errors(&stats, wrong).is_empty(),
        "a nested double of the wrong type"
    );

    let mut wrong = good_stats.clone();
    wrong["errorCounts"]["kernel.server.capacity"] = json!("-2");
    assert!(
        !response_errors(&stats, wrong).is_empty(),
        "a negative uint64 map value"
    );

    let mut wrong = good_stats;
    wrong["endpoints"][0]["success_count"] = json!(true);
    assert!(
        !response_errors(&stats, wrong).is_empty(),
        "an original field name of the wrong type"
    );

    assert!(
        !stats.is_valid(&json!({ "reply": {} })),
        "the envelope is closed"
    );
}

#[test]
fn an_unknown_message_is_an_error() {
    let pool = schema::pool(&[]).unwrap();
    let error = schema::endpoint_schema(
        &pool,
        "com.example.greeter",
        "1",
        "stats",
        "kernel.platform.v1.StatsRequest",
        "kernel.platform.v1.NoSuchResponse",
    )
    .unwrap_err();
    assert!(
        matches!(error, schema::SchemaError::UnknownMessage(name) if name.ends_with("NoSuchResponse"))
    );
}
