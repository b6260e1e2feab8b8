//! The operational cases of the conformance suite: default endpoints, health checks and the
//! registry, on each transport.

use std::sync::Arc;
use std::time::Duration;

use kernel_client::Registry;
use kernel_proto::examples::HelloResponse;
use kernel_proto::platform::{
    HealthRequest, HealthResponse, HealthStatus, JsonSchemaRequest, JsonSchemaResponse,
    LoadedConfigRequest, LoadedConfigResponse, StatsRequest, StatsResponse,
};
use kernel_server::{HealthCheck, Measurements};
use kernel_transport::{ContentType, Envelope, MessageType};

use super::*;

/// An ADMIN session the service can verify: signed with a key its `Auth` knows and put in the
/// cache the service reads (as the login service's answer would be), and that `Auth`.
pub async fn admin_session(client: &Client) -> (String, kernel_auth::Auth) {
    use kernel_auth::{Cached, Claims, Keyring, MemorySessionCache, SessionCache, TokenSigner};
    use std::time::{SystemTime, UNIX_EPOCH};

    let signer = TokenSigner::generate("test").unwrap();
    let mut keys = Keyring::new();
    keys.insert(signer.key_id(), signer.public_key()).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let session = unique("session");
    let token = signer.sign(&Claims {
        session_id: session.clone(),
        mechanism: "h2".into(),
        device: "test".into(),
        user_id: "operator".into(),
        created: now,
        expires: now + 600,
        renew: None,
        roles: vec!["ADMIN".into()],
    });
    let cache = MemorySessionCache::default();
    cache
        .put(&session, Cached::Token(token), Duration::from_secs(600))
        .await
        .unwrap();
    let auth = kernel_auth::Auth::builder(client)
        .keys(keys)
        .fixed_keys()
        .cache(cache)
        .build();
    (session, auth)
}

/// `health`, `stats`, `loadedconfig` and `jsonschema` answer on every service, in protobuf
/// and in JSON, with what the instance really did; `stats` and `loadedconfig` only to ADMIN.
pub async fn default_endpoints_answer_in_protobuf_and_json(harness: impl Harness) {
    let service = unique("greeter");
    let server_side = client(&harness).await;
    let (session, auth) = admin_session(&server_side).await;
    let running = serve(
        greeter(&service, "a", Arc::default(), &server_side)
            .auth(auth)
            .build()
            .unwrap(),
    )
    .await;
    let client = client(&harness).await;
    for operator_only in ["stats", "loadedconfig"] {
        let request = Envelope::request(&service, operator_only, ContentType::Json, "{}".into());
        let reply = raw_call(&harness, &service, request).await;
        let refused: PlatformError = codec::decode(reply.content_type, &reply.payload).unwrap();
        assert_eq!(refused.code, "kernel.auth.notsignedin", "{operator_only}");
    }
    for name in ["ada", "grace"] {
        let _: HelloResponse = client.call(&service, "hello", &hello(name)).await.unwrap();
    }
    let failed = client
        .call::<HelloResponse>(&service, "fail", &hello("x"))
        .await;
    assert_eq!(failed.unwrap_err().code(), "test.greeter.fail.nobody");

    let health: HealthResponse = client
        .call(&service, "health", &HealthRequest { run_now: true })
        .await
        .unwrap();
    assert_eq!(health.service_name, service);
    assert!(
        health
            .instance_id
            .starts_with(&format!("server-{service}-")),
        "{health:?}"
    );
    let ids: Vec<&str> = health.checks.iter().map(|c| c.id.as_str()).collect();
    for builtin in [
        "kernel.transport.connection",
        "kernel.client.circuit",
        "kernel.resource.capacity",
    ] {
        assert!(ids.contains(&builtin), "{builtin} missing from {ids:?}");
    }
    assert!(
        health
            .checks
            .iter()
            .all(|c| c.status() == HealthStatus::Healthy),
        "run_now gives fresh, healthy samples: {health:?}"
    );
    assert!(health.healthy);

    let stats: StatsResponse = client
        .call(&service, "stats", &StatsRequest {})
        .session_id(&session)
        .await
        .unwrap();
    assert_eq!(stats.service_name, service);
    assert_eq!(stats.service_version, "1.0.0");
    assert_eq!(stats.instance_id, health.instance_id);
    assert_eq!(stats.status, "RUNNING");
    let hello_stats = stats
        .endpoints
        .iter()
        .find(|e| e.name == "hello")
        .expect("hello in stats");
    assert_eq!(hello_stats.success_count, 2, "{stats:?}");
    let latency = hello_stats.latency.expect("hello has latencies");
    assert!(
        latency.mean_ms > 0.0 && latency.p99_ms >= latency.p95_ms,
        "{latency:?}"
    );
    assert_eq!(hello_stats.sla.map(|sla| sla.p95_ms), Some(200.0));
    assert_eq!(stats.error_counts.get("test.greeter.fail.nobody"), Some(&1));
    let names: Vec<&str> = stats.endpoints.iter().map(|e| e.name.as_str()).collect();
    for default in kernel_server::DEFAULT_ENDPOINTS {
        assert!(names.contains(&default), "{default} missing from {names:?}");
    }

    let config: LoadedConfigResponse = client
        .call(&service, "loadedconfig", &LoadedConfigRequest {})
        .session_id(&session)
        .await
        .unwrap();
    let config: serde_json::Value = serde_json::from_str(&config.config).unwrap();
    assert_eq!(config["service"]["name"], service.as_str());
    assert_eq!(config["service"]["capacity"], 100);

    let schema: JsonSchemaResponse = client
        .call(
            &service,
            "jsonschema",
            &JsonSchemaRequest {
                endpoint: "hello".into(),
            },
        )
        .await
        .unwrap();
    let schema: serde_json::Value = serde_json::from_str(&schema.jsonschema).unwrap();
    assert!(
        schema
            .to_string()
            .contains("kernel.examples.v1.HelloRequest"),
        "{schema}"
    );

    // The same over JSON, as a client in another language would ask.
    for endpoint in ["health", "stats", "loadedconfig", "jsonschema"] {
        let mut request = Envelope::request(&service, endpoint, ContentType::Json, "{}".into());
        request.session_id = session.clone();
        let reply = raw_call(&harness, &service, request).await;
        assert_eq!(reply.message_type, MessageType::Reply, "{endpoint}");
        assert_eq!(reply.content_type, ContentType::Json, "{endpoint}");
        let json: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
        assert!(json.is_object(), "{endpoint}: {json}");
    }
    let mut request = Envelope::request(&service, "stats", ContentType::Json, "{}".into());
    request.session_id = session.clone();
    let reply = raw_call(&harness, &service, request).await;
    let json: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(json["instanceId"], health.instance_id.as_str(), "{json}");
    running.stop().await;
}

/// A check that never returns is reported failed at its timeout, without holding up
/// `health` or the service's requests.
pub async fn a_hanging_check_is_reported_failed_within_its_timeout(harness: impl Harness) {
    let name = unique("hanging");
    let server_side = client(&harness).await;
    let hangs = HealthCheck::new("test.hangs", || {
        std::future::pending::<Result<Measurements, _>>()
    })
    .timeout(Duration::from_millis(300));
    let service = greeter(&name, "a", Arc::default(), &server_side)
        .health_check(hangs)
        .build()
        .unwrap();
    let running = serve(service).await;
    let client = client(&harness).await;

    let meanwhile = hello("meanwhile");
    let started = std::time::Instant::now();
    let asking = client.call::<HealthResponse>(&name, "health", &HealthRequest { run_now: true });
    let greeting = client.call::<HelloResponse>(&name, "hello", &meanwhile);
    let (health, greeting) = tokio::join!(asking, greeting);
    let elapsed = started.elapsed();
    assert_eq!(greeting.unwrap().greeting, "hello, meanwhile");
    let health = health.unwrap();
    let hung = health
        .checks
        .iter()
        .find(|c| c.id == "test.hangs")
        .expect("the hanging check is reported");
    assert_eq!(hung.status(), HealthStatus::Unhealthy, "{health:?}");
    assert!(hung.error_message.contains("timed out"), "{hung:?}");
    assert!(!health.healthy);
    assert!(
        elapsed < Duration::from_secs(2),
        "health answered within the check's timeout and the call's first attempt, took {elapsed:?}"
    );
    running.stop().await;
}

/// A registry sees two instances of a service come, then one go (by its farewell) and the
/// other fall silent, and teaches its client the endpoints' SLAs.
pub async fn the_registry_sees_instances_come_and_go(harness: impl Harness) {
    let name = unique("registered");
    let client = client(&harness).await;
    let registry = Registry::builder(&client)
        .silence(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let instance = |id: &'static str| {
        let harness = &harness;
        let name = name.clone();
        async move {
            let server_side = super::client(harness).await;
            let service = greeter(&name, id, Arc::default(), &server_side)
                .announce_interval(Duration::from_millis(200))
                .endpoint(
                    kernel_server::Endpoint::new("slow", |_: Request<HelloRequest>| async {
                        Ok::<_, Error>(HelloResponse::default())
                    })
                    .open()
                    .upper95(Duration::from_millis(1500)),
                )
                .build()
                .unwrap();
            serve(service).await
        }
    };
    let first = instance("a").await;
    let second = instance("b").await;
    let seen = |count: usize| {
        let registry = registry.clone();
        let name = name.clone();
        async move {
            while registry.instances(&name).len() != count {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    bounded("the registry to see both instances", seen(2)).await;
    assert!(registry.services().contains(&name));
    let instances = registry.instances(&name);
    assert!(
        instances.iter().all(|i| i.version == "1.0.0"),
        "{instances:?}"
    );
    assert_eq!(
        registry.upper95(&name, "slow"),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        registry.upper95(&name, "hello"),
        Some(kernel_server::DEFAULT_UPPER95)
    );

    first.stop().await;
    bounded(
        "the registry to forget the instance that said goodbye",
        seen(1),
    )
    .await;

    drop(second); // aborted: no farewell, it just falls silent
    bounded("the registry to forget the silent instance", seen(0)).await;
    assert!(!registry.services().contains(&name));
    assert_eq!(registry.upper95(&name, "slow"), None);
    assert_eq!(registry.rejected(), 0);
}

/// A caller that names no trace starts one; the trace id (and a W3C `traceparent` naming it)
/// travels with the calls each handler makes, two hops down.
pub async fn a_trace_id_is_made_and_seen_two_hops_down(harness: impl Harness) {
    let (back, middle, front) = (
        unique("trace.back"),
        unique("trace.middle"),
        unique("trace.front"),
    );
    // The back service reports the trace it sees, and the trace its traceparent names.
    let report = |request: Request<HelloRequest>| async move {
        let parent = request
            .header(kernel_transport::trace::TRACEPARENT)
            .unwrap_or_default();
        Ok::<_, Error>(HelloResponse {
            greeting: request.trace_id().to_owned(),
            served_by: kernel_transport::trace::trace_id_of(parent)
                .unwrap_or_default()
                .to_owned(),
        })
    };
    let back_side = client(&harness).await;
    let back_running = serve(
        Service::builder(&back, &back_side)
            .endpoint(Endpoint::new("report", report).open())
            .build()
            .unwrap(),
    )
    .await;

    // Middle and front relay, each checking that what comes back is its own trace.
    let relay = |calls: Client, next: String, endpoint: &'static str| {
        move |request: Request<HelloRequest>| {
            let (calls, next) = (calls.clone(), next.clone());
            async move {
                let seen: HelloResponse = request
                    .call(&calls, &next, endpoint, request.message())
                    .await?;
                if seen.greeting != request.trace_id() || request.trace_id().is_empty() {
                    return Err(Error::internal_server_error(
                        "test.trace.mismatch",
                        format!("{} saw {:?}, got back {:?}", next, request.trace_id(), seen),
                    ));
                }
                Ok::<_, Error>(seen)
            }
        }
    };
    let middle_side = client(&harness).await;
    let middle_running = serve(
        Service::builder(&middle, &middle_side)
            .endpoint(
                Endpoint::new("relay", relay(middle_side.clone(), back.clone(), "report")).open(),
            )
            .build()
            .unwrap(),
    )
    .await;
    let front_side = client(&harness).await;
    let front_running = serve(
        Service::builder(&front, &front_side)
            .endpoint(
                Endpoint::new("relay", relay(front_side.clone(), middle.clone(), "relay")).open(),
            )
            .build()
            .unwrap(),
    )
    .await;

    let caller = client(&harness).await;
    let first: HelloResponse = caller.call(&front, "relay", &hello("t")).await.unwrap();
    assert_eq!(
        first.greeting.len(),
        32,
        "a W3C trace id was made: {first:?}"
    );
    assert_eq!(
        first.served_by, first.greeting,
        "traceparent names the same trace"
    );
    let second: HelloResponse = caller.call(&front, "relay", &hello("t")).await.unwrap();
    assert_ne!(
        second.greeting, first.greeting,
        "each call starts its own trace"
    );

    front_running.stop().await;
    middle_running.stop().await;
    back_running.stop().await;
}
