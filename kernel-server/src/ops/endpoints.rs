//! The default endpoints: `health`, `stats`, `loadedconfig` and `jsonschema`.
//!
//! Every service has them, with these names; a service's own endpoint of the same name
//! replaces the default one. `health` and `jsonschema` are open, for monitoring and tooling;
//! `stats` and `loadedconfig` take the default authoriser (ADMIN). `loadedconfig` never shows a
//! secret.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use kernel_errors::Error;
use kernel_proto::platform::{
    HealthRequest, HealthResponse, JsonSchemaRequest, JsonSchemaResponse, LoadedConfigRequest,
    LoadedConfigResponse, StatsRequest, StatsResponse,
};

use super::{Operations, monitor, stats};
use crate::{Endpoint, Request};
use kernel_transport::clip;

/// The names of the default endpoints.
pub const DEFAULT_ENDPOINTS: [&str; 4] = ["health", "stats", "loadedconfig", "jsonschema"];

/// The default endpoints, sharing `ops`. `health`'s upper95 covers the slowest check's
/// timeout, since it may run them all.
pub(crate) fn defaults(ops: &Arc<Operations>) -> Vec<Endpoint> {
    let slowest = ops
        .checks
        .iter()
        .map(|slot| slot.check.timeout)
        .max()
        .unwrap_or_default();
    vec![
        Endpoint::with_state("health", Arc::clone(ops), health)
            .upper95(crate::DEFAULT_UPPER95.max(slowest + Duration::from_millis(100)))
            .open(),
        Endpoint::with_state("stats", Arc::clone(ops), stats_endpoint),
        Endpoint::with_state("loadedconfig", Arc::clone(ops), loaded_config),
        Endpoint::with_state("jsonschema", Arc::clone(ops), json_schema).open(),
    ]
}

/// The latest sample of every check; with `run_now`, fresh samples (each check run at most
/// once per second whoever asks, and bounded by its timeout).
async fn health(
    ops: Arc<Operations>,
    request: Request<HealthRequest>,
) -> Result<HealthResponse, Error> {
    if !request.message().run_now {
        return Ok(ops.latest_health());
    }
    let checks = join_all(ops.checks.iter().map(|slot| async {
        let (sample, new) = slot.run_now().await;
        if new {
            monitor::publish_health(&ops, &sample).await;
        }
        sample
    }))
    .await;
    Ok(ops.health(checks))
}

async fn stats_endpoint(
    ops: Arc<Operations>,
    _: Request<StatsRequest>,
) -> Result<StatsResponse, Error> {
    Ok(stats::snapshot(&ops, "RUNNING"))
}

async fn loaded_config(
    ops: Arc<Operations>,
    _: Request<LoadedConfigRequest>,
) -> Result<LoadedConfigResponse, Error> {
    Ok(LoadedConfigResponse {
        config: ops.config.to_string(),
    })
}

/// The JSON Schema of each endpoint's request and response (of the named one only, if the
/// request names one): a JSON object from endpoint name to schema. An endpoint whose messages
/// the service has no descriptors for gets a schema that accepts anything and says why.
async fn json_schema(
    ops: Arc<Operations>,
    request: Request<JsonSchemaRequest>,
) -> Result<JsonSchemaResponse, Error> {
    let wanted = request.message().endpoint.as_str();
    let endpoints: Vec<_> = ops
        .endpoints()
        .iter()
        .filter(|endpoint| wanted.is_empty() || endpoint.name == wanted)
        .collect();
    if endpoints.is_empty() {
        return Err(Error::not_found(
            crate::codes::UNKNOWN_ENDPOINT,
            format!("{} has no endpoint {:?}", ops.service, clip(wanted)),
        ));
    }
    let mut schemas = serde_json::Map::new();
    for endpoint in endpoints {
        let schema = crate::schema::endpoint_schema(
            &ops.descriptors,
            &ops.service,
            &ops.version,
            &endpoint.name,
            &endpoint.request_type,
            &endpoint.response_type,
        )
        .unwrap_or_else(|error| {
            serde_json::json!({
                "$schema": crate::schema::DIALECT,
                "title": format!("{}.{}", ops.service, endpoint.name),
                "description": format!(
                    "no schema: {error} (add the messages' descriptors with ServiceBuilder::descriptors)"
                ),
            })
        });
        schemas.insert(endpoint.name.clone(), schema);
    }
    Ok(JsonSchemaResponse {
        jsonschema: serde_json::Value::Object(schemas).to_string(),
    })
}
