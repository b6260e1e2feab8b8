//! `kernel services` and `kernel instances [SERVICE]`: what a registry hears announced.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kernel_client::{Instance, Registry};

use super::{out, out_json};
use crate::context::Context;
use crate::failure::Failure;
use crate::table::Table;

/// Listens for `wait`, then answers what the registry heard.
async fn listen(context: &Context, wait: Duration) -> Result<Registry, Failure> {
    let client = context.client().await?;
    let registry = Registry::start(&client).await?;
    tokio::time::sleep(wait).await;
    Ok(registry)
}

pub(crate) async fn services(context: &Context, wait: Duration) -> Result<(), Failure> {
    let registry = listen(context, wait).await?;
    let mut rows = Vec::new();
    for service in registry.services() {
        let instances = registry.instances(&service);
        let versions: BTreeSet<&str> = instances.iter().map(|i| i.version.as_str()).collect();
        let endpoints: BTreeSet<&str> = instances
            .iter()
            .flat_map(|i| i.endpoints.iter().map(|e| e.name.as_str()))
            .collect();
        rows.push(serde_json::json!({
            "service": service,
            "instances": instances.len(),
            "versions": versions,
            "endpoints": endpoints,
        }));
    }
    if context.global.json {
        return out_json(&rows);
    }
    let mut table = Table::new(["SERVICE", "INSTANCES", "VERSIONS", "ENDPOINTS"]);
    for row in &rows {
        let list = |key: &str| {
            row[key]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        };
        table.row(vec![
            row["service"].as_str().unwrap_or_default().to_owned(),
            row["instances"].to_string(),
            list("versions"),
            list("endpoints"),
        ]);
    }
    if table.is_empty() {
        out(format_args!(
            "no service announced itself within {wait:?}\n"
        ));
    } else {
        out(table.render(context.paint()));
    }
    Ok(())
}

pub(crate) async fn instances(
    context: &Context,
    only: Option<&str>,
    wait: Duration,
) -> Result<(), Failure> {
    let registry = listen(context, wait).await?;
    let services: Vec<String> = match only {
        Some(service) => vec![service.to_owned()],
        None => registry.services(),
    };
    let instances: Vec<Instance> = services
        .iter()
        .flat_map(|service| registry.instances(service))
        .collect();
    if context.global.json {
        let rows: Vec<_> = instances.iter().map(instance_json).collect();
        return out_json(&rows);
    }
    if instances.is_empty() {
        out(format_args!(
            "no instance announced itself within {wait:?}\n"
        ));
        return Ok(());
    }
    for (n, instance) in instances.iter().enumerate() {
        if n > 0 {
            out("\n");
        }
        out(format_args!(
            "{} {} instance {} on {}, up {}s\n",
            instance.service,
            instance.version,
            instance.id,
            instance.hostname,
            SystemTime::now()
                .duration_since(instance.started_at)
                .unwrap_or_default()
                .as_secs()
        ));
        let mut table = Table::new([
            "ENDPOINT",
            "MEAN",
            "UPPER95",
            "SUBSCRIBES",
            "REQUEST",
            "RESPONSE",
        ]);
        for endpoint in &instance.endpoints {
            table.row(vec![
                endpoint.name.clone(),
                format!("{}ms", endpoint.mean.as_millis()),
                format!("{}ms", endpoint.upper95.as_millis()),
                endpoint.subscribe.clone().unwrap_or_else(|| "-".into()),
                endpoint.request_type.clone(),
                endpoint.response_type.clone(),
            ]);
        }
        out(table.render(context.paint()));
    }
    Ok(())
}

fn instance_json(instance: &Instance) -> serde_json::Value {
    let started = instance
        .started_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let endpoints: Vec<_> = instance
        .endpoints
        .iter()
        .map(|e| {
            serde_json::json!({
                "name": e.name,
                "mean_ms": e.mean.as_millis(),
                "upper95_ms": e.upper95.as_millis(),
                "subscribe": e.subscribe,
                "request_type": e.request_type,
                "response_type": e.response_type,
            })
        })
        .collect();
    serde_json::json!({
        "service": instance.service,
        "id": instance.id,
        "version": instance.version,
        "hostname": instance.hostname,
        "started_unix_ms": started,
        "endpoints": endpoints,
    })
}
