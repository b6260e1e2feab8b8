//! The operational surface as a deployment configures it: `Service::from_env` with a
//! configuration file and `KERNEL_*` variables, metrics reaching a real statsd socket and a
//! Prometheus scrape, `loadedconfig`, and the reload of breaker options.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error
#![allow(clippy::result_large_err)] // figment's Jail closures return its (large) error type

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::time::Duration;

use figment::Jail;
use kernel::auth::{Claims, TokenSigner};
use kernel::client::BreakerOptions;
use kernel::prelude::*;
use kernel::proto::examples::{HelloRequest, HelloResponse};
use kernel::proto::login::{ReadSessionRequest, ReadSessionResponse};
use kernel::proto::platform::{LoadedConfigRequest, LoadedConfigResponse};
use kernel_testkit::bounded;
use std::time::{SystemTime, UNIX_EPOCH};

async fn hello(request: Request<HelloRequest>) -> Result<HelloResponse, Error> {
    match request.message().name.as_str() {
        "nobody" => Err(Error::not_found("test.ops.hello.nobody", "nobody to greet")),
        name => Ok(HelloResponse {
            greeting: format!("hello, {name}"),
            served_by: String::new(),
        }),
    }
}

/// Runs `test` inside a figment jail (its own working directory and environment, one jail at
/// a time), so that tests can write `kernel.toml` and set `KERNEL_*` variables.
fn in_jail(test: impl FnOnce(&mut Jail) -> figment::error::Result<()>) {
    Jail::expect_with(test);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

type Running = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), Error>>,
);

/// Serves `service` until told to stop.
fn serve(service: Service) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(service.serve_with_shutdown(async {
        let _ = stopped.await;
    }));
    (stop, running)
}

async fn stop((stop, running): Running) {
    stop.send(()).unwrap();
    bounded("the service to stop", running)
        .await
        .unwrap()
        .unwrap();
}

/// Calls until the service answers (its queue is consumed once serve has started).
async fn until_served(client: &Client, service: &str) {
    bounded("the service to serve", async {
        let probe = HelloRequest {
            name: "probe".into(),
        };
        while client
            .call::<HelloResponse>(service, "hello", &probe)
            .attempts(1)
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[test]
fn metrics_reach_a_real_statsd_socket_under_h2s_names() {
    let statsd = UdpSocket::bind("127.0.0.1:0").unwrap();
    statsd
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let name = "com.example.ops.statsd";
    in_jail(|jail| {
        jail.set_env(
            "KERNEL_STATSD_ADDR",
            statsd.local_addr().unwrap().to_string(),
        );
        runtime().block_on(async {
            let service = Service::from_env(name)
                .await
                .unwrap()
                .endpoint(Endpoint::new("hello", hello).open())
                .build()
                .unwrap();
            let client = service.client().clone();
            let running = serve(service);
            until_served(&client, name).await;
            let nobody = HelloRequest {
                name: "nobody".into(),
            };
            let failed = client.call::<HelloResponse>(name, "hello", &nobody).await;
            assert_eq!(failed.unwrap_err().code(), "test.ops.hello.nobody");
            stop(running).await;
        });
        Ok(())
    });

    // Every datagram sent (the socket gives up 300 ms after the last one).
    let mut names = BTreeSet::new();
    let mut buf = [0u8; 4096];
    while let Ok(len) = statsd.recv(&mut buf) {
        for line in String::from_utf8_lossy(&buf[..len]).lines() {
            if let Some((metric, _)) = line.split_once(':') {
                names.insert(metric.to_owned());
            }
        }
    }
    for expected in [
        "runtime.started",
        "success.hello",
        "server.error.test.ops.hello.nobody",
        "server.tokens.com.example.ops.statsd",
        "server.inflightrequests",
        "client.com.example.ops.statsd.hello.success",
        // Error codes from other services never name a metric: the kind does.
        "client.error.remote.NOT_FOUND",
    ] {
        let expected = format!("{name}.{expected}");
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:#?}"
        );
    }
}

/// A login service that knows one ADMIN session, signed with `signer`.
fn fake_login(client: &Client, signer: &TokenSigner, session: &str) -> Service {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = signer.sign(&Claims {
        session_id: session.to_owned(),
        mechanism: "h2".into(),
        device: "test".into(),
        user_id: "operator".into(),
        created: now,
        expires: now + 600,
        renew: None,
        roles: vec!["ADMIN".into()],
    });
    let known = (session.to_owned(), token);
    let read = move |request: Request<ReadSessionRequest>| {
        let (session, token) = known.clone();
        async move {
            if request.message().session_id != session {
                return Err(Error::not_found(
                    "kernel.login.readsession.notfound",
                    "no such session",
                ));
            }
            Ok(ReadSessionResponse {
                session_id: session,
                token,
            })
        }
    };
    Service::builder("kernel.login", client)
        .endpoint(Endpoint::new("readsession", read).open())
        .build()
        .unwrap()
}

#[test]
fn loadedconfig_shows_every_section_from_file_and_environment() {
    use base64::Engine as _;

    let name = "com.example.ops.config";
    let signer = TokenSigner::generate("ops").unwrap();
    let public_key = base64::engine::general_purpose::STANDARD.encode(signer.public_key());
    in_jail(|jail| {
        jail.create_file(
            "kernel.toml",
            &format!(
                "[server]\ncapacity = 7\n[client.breaker]\nthreshold = 0.8\n\
                 [auth]\nfetch_keys = false\n[auth.public_keys]\nops = \"{public_key}\"\n"
            ),
        )?;
        jail.set_env("KERNEL_CLIENT__ATTEMPTS", "2");
        jail.set_env("KERNEL_ZK_HOSTS", "127.0.0.1:2181");
        runtime().block_on(async {
            let service = Service::from_env(name)
                .await
                .unwrap()
                .endpoint(Endpoint::new("hello", hello).open())
                .build()
                .unwrap();
            let client = service.client().clone();
            let login = serve(fake_login(&client, &signer, "session-1"));
            let running = serve(service);
            until_served(&client, name).await;
            // Operators only: the configured public key verifies the login service's token.
            let anonymous = client
                .call::<LoadedConfigResponse>(name, "loadedconfig", &LoadedConfigRequest {})
                .await;
            assert_eq!(anonymous.unwrap_err().code(), "kernel.auth.notsignedin");
            let shown: LoadedConfigResponse = client
                .call(name, "loadedconfig", &LoadedConfigRequest {})
                .session_id("session-1")
                .await
                .unwrap();
            let shown: serde_json::Value = serde_json::from_str(&shown.config).unwrap();
            assert_eq!(shown["server"]["capacity"], 7, "{shown}");
            assert_eq!(
                shown["service"]["capacity"], 7,
                "the builder took it: {shown}"
            );
            assert_eq!(shown["client"]["attempts"], 2, "{shown}");
            assert_eq!(shown["client"]["breaker"]["threshold"], 0.8, "{shown}");
            assert_eq!(
                shown["sync"]["zookeeper_hosts"], "127.0.0.1:2181",
                "{shown}"
            );
            assert!(
                shown["transport"].is_object() && shown["metrics"].is_object(),
                "{shown}"
            );
            assert_eq!(
                shown["auth"]["public_keys"]["ops"],
                public_key.as_str(),
                "{shown}"
            );
            stop(running).await;
            stop(login).await;
        });

        jail.set_env("KERNEL_SERVER__CAPACITY", "none");
        let refused = runtime().block_on(Service::from_env(name));
        let error = refused.expect_err("a bad value is refused");
        assert_eq!(error.code(), kernel::INVALID_CONFIG);
        assert!(error.to_string().contains("none"), "{error}");
        Ok(())
    });
}

#[test]
fn breaker_options_reload_when_the_file_changes() {
    in_jail(|jail| {
        jail.create_file("kernel.toml", "[client.breaker]\nthreshold = 0.9\n")?;
        runtime().block_on(async {
            let client = Client::from_env().await.unwrap();
            let first = BreakerOptions::new().threshold(0.9);
            assert_eq!(client.breaker_settings().default_options(), first);

            // An invalid file is ignored: the running settings stay.
            std::fs::write("kernel.toml", "[client.breaker]\nthreshold = 7.0\n").unwrap();
            tokio::time::sleep(kernel::RELOAD_INTERVAL * 2).await;
            assert_eq!(client.breaker_settings().default_options(), first);

            std::fs::write(
                "kernel.toml",
                "[client.breaker]\nthreshold = 0.5\nmin_samples = 20\n",
            )
            .unwrap();
            let wanted = BreakerOptions::new().threshold(0.5).min_samples(20);
            bounded("the new breaker options to be in force", async {
                while client.breaker_settings().default_options() != wanted {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await;
        });
        Ok(())
    });
}

#[cfg(feature = "prometheus")]
#[test]
fn prometheus_scrapes_and_kubernetes_probes_over_http() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        (status, response)
    }

    // A free loopback port (taken again by the service a moment later).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let name = "com.example.ops.prometheus";
    in_jail(|jail| {
        jail.set_env("KERNEL_METRICS__PROMETHEUS_LISTEN", addr.to_string());
        runtime().block_on(async {
            let service = Service::from_env(name)
                .await
                .unwrap()
                .endpoint(Endpoint::new("hello", hello).open())
                .build()
                .unwrap();
            let probe = service.clone();
            let client = service.client().clone();
            let running = serve(service);
            until_served(&client, name).await;
            bounded("the instance to be ready", async {
                while !probe.is_ready() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;

            assert_eq!(bounded("/healthz", get(addr, "/healthz")).await.0, 200);
            assert_eq!(bounded("/readyz", get(addr, "/readyz")).await.0, 200);
            let (status, metrics) = bounded("/metrics", get(addr, "/metrics")).await;
            assert_eq!(status, 200);
            for series in [
                "kernel_success_hello_seconds_count",
                "kernel_runtime_started_total",
                "kernel_client_com_example_ops_prometheus_hello_success_seconds_bucket",
            ] {
                assert!(
                    metrics.contains(series),
                    "{series} missing from:\n{metrics}"
                );
            }
            stop(running).await;
            assert!(!probe.is_ready(), "not ready once stopped");
        });
        Ok(())
    });
}
