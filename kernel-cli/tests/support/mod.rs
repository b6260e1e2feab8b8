//! What the CLI's tests share: a platform on the real RabbitMQ (a login service with the
//! ADMIN user `ada`, and a greeter), and the `kernel` binary run against it.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // shared by several test crates

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kernel_auth::{Auth, TokenSigner};
use kernel_client::Client;
use kernel_errors::Error;
use kernel_login::{LoginService, MemoryCredentialStore};
use kernel_proto::examples::{Greeted, HelloRequest, HelloResponse};
use kernel_server::{Endpoint, Request, Service};
use kernel_transport::{AmqpTransport, Destination, Envelope, Transport};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use tokio::sync::{mpsc, oneshot};

pub use kernel_testkit::{bounded, unique};

/// Ada's password.
pub const ADA_PASSWORD: &str = "correct horse battery staple";

/// The broker's URL, from the environment or the engines' env file.
pub fn amqp_url() -> String {
    kernel_testkit::engine_address("KERNEL_AMQP_URL")
}

async fn client() -> Client {
    let transport = bounded("an AMQP connection", AmqpTransport::connect(&amqp_url()))
        .await
        .unwrap();
    Client::builder(Arc::new(transport) as Arc<dyn Transport>)
        .calling_as("test.cli")
        .build()
        .unwrap()
}

/// `hello`: open; greets, or answers NotFound for the name `nobody`.
async fn hello(request: Request<HelloRequest>) -> Result<HelloResponse, Error> {
    let name = &request.message().name;
    if name == "nobody" {
        return Err(Error::not_found("com.example.nobody", "nobody is here"));
    }
    Ok(HelloResponse {
        greeting: format!("hello {name}"),
        served_by: String::new(),
    })
}

/// `whoami`: ADMIN only; answers the user's id.
async fn whoami(request: Request<HelloRequest>) -> Result<HelloResponse, Error> {
    let user = request.scope().auth_user().map(|u| u.id().to_owned());
    Ok(HelloResponse {
        greeting: user.unwrap_or_default(),
        served_by: String::new(),
    })
}

/// A login service and a greeter, each on its own connection, with unique names; stopped
/// when dropped.
pub struct Platform {
    pub login: String,
    pub greeter: String,
    /// A client of the test's own, for publishing.
    pub client: Client,
    /// The `kernel` tool's config directory (its saved session).
    pub config_dir: PathBuf,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), Error>>>,
}

impl Platform {
    pub async fn start() -> Platform {
        let login_name = unique("test.cli.login");
        let greeter = unique("test.cli.greeter");
        let login = LoginService::builder(
            MemoryCredentialStore::new(),
            TokenSigner::generate("test-key").unwrap(),
        )
        .name(&login_name)
        .build()
        .unwrap();
        login
            .create_user("ada", ADA_PASSWORD, ["ADMIN"])
            .await
            .unwrap();
        let login_side = client().await;
        let login_service = login.service(&login_side).build().unwrap();

        let greeter_side = client().await;
        let auth = Auth::builder(&greeter_side)
            .login_service(&login_name)
            .build();
        let greeter_service = Service::builder(&greeter, &greeter_side)
            .version("1.2.3")
            .announce_interval(Duration::from_secs(1))
            .auth(auth)
            .endpoint(Endpoint::new("hello", hello).open())
            .endpoint(Endpoint::new("whoami", whoami))
            .build()
            .unwrap();

        let mut platform = Platform {
            login: login_name,
            greeter,
            client: client().await,
            config_dir: std::env::temp_dir().join(unique("kernel-cli-test")),
            stops: Vec::new(),
            tasks: Vec::new(),
        };
        platform.serve(login_service).await;
        platform.serve(greeter_service).await;
        platform
    }

    /// Starts the demo subscriber: a service (`test.cli.audit.…`, after the examples'
    /// `com.example.audit`) whose endpoint `record` subscribes to `pattern` and takes a
    /// `kernel.examples.v1.Greeted`, announcing itself every half second. Answers what it
    /// records.
    pub async fn start_audit(&mut self, pattern: &str) -> mpsc::UnboundedReceiver<Greeted> {
        let (recorded, records) = mpsc::unbounded_channel();
        let record = move |request: Request<Greeted>| {
            let recorded = recorded.clone();
            async move {
                let _ = recorded.send(request.message().clone());
                Ok::<_, Error>(Greeted::default())
            }
        };
        let audit = Service::builder(unique("cli.audit"), &client().await)
            .announce_interval(Duration::from_millis(500))
            .endpoint(Endpoint::new("record", record).open().subscribe(pattern))
            .build()
            .unwrap();
        self.serve(audit).await;
        records
    }

    /// Starts `kernel watch TOPIC args…` and returns once it says it is subscribed (its
    /// `watching TOPIC` line on stderr).
    pub async fn watch(&self, topic: &str, args: &[&str]) -> Watching {
        let mut child = self.command(&["watch", topic]).args(args).spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let ready = bounded("watch to subscribe", stderr.next_line())
            .await
            .unwrap();
        assert_eq!(ready.as_deref(), Some(format!("watching {topic}").as_str()));
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Watching { child, stdout }
    }

    /// Publishes `publication` on `topic` from the platform's client.
    pub async fn publish(&self, topic: &str, publication: Envelope) {
        self.client
            .transport()
            .send(Destination::Topic(topic), publication)
            .await
            .unwrap();
    }

    /// Serves `service` until the platform is dropped; returns once its queue is consumed.
    async fn serve(&mut self, service: Service) {
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = service.clone();
        self.tasks
            .push(tokio::spawn(service.serve_with_shutdown(async {
                let _ = stopped.await;
            })));
        self.stops.push(stop);
        bounded("the service to start consuming", handle.serving()).await;
    }

    /// The `kernel` binary with `args`, against this platform's broker, login service and
    /// config directory.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kernel"));
        command
            .args(args)
            .env("KERNEL_AMQP_URL", amqp_url())
            .env("KERNEL_CLI_CONFIG_DIR", &self.config_dir)
            .env("KERNEL_LOGIN_SERVICE", &self.login)
            .env_remove("KERNEL_SESSION")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// `kernel args…` run on a terminal of its own: `script` (util-linux, in Debian's
    /// essential `bsdutils`) gives it a pseudo-terminal as stdin, stdout and `/dev/tty`, and
    /// copies its own stdin (piped) to that terminal and the terminal's output to its stdout.
    pub fn command_on_a_terminal(&self, args: &[&str]) -> tokio::process::Command {
        let line = std::iter::once(env!("CARGO_BIN_EXE_kernel"))
            .chain(args.iter().copied())
            .map(|word| format!("'{}'", word.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut command = tokio::process::Command::new("script");
        command
            .args(["--quiet", "--return", "--command", &line, "/dev/null"])
            .env("KERNEL_AMQP_URL", amqp_url())
            .env("KERNEL_CLI_CONFIG_DIR", &self.config_dir)
            .env("KERNEL_LOGIN_SERVICE", &self.login)
            .env_remove("KERNEL_SESSION")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs `kernel args…` to the end (bounded).
    pub async fn run(&self, args: &[&str]) -> Run {
        Run(bounded("the kernel command", self.command(args).output())
            .await
            .unwrap())
    }

    /// Runs `kernel args…` with `input` on stdin.
    pub async fn run_with_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child = self.command(args).stdin(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
        drop(stdin);
        Run(bounded("the kernel command", child.wait_with_output())
            .await
            .unwrap())
    }

    /// Signs ada in through the tool.
    pub async fn login_ada(&self) {
        let run = self
            .run_with_stdin(
                &["login", "ada", "--password-stdin"],
                &format!("{ADA_PASSWORD}\n"),
            )
            .await;
        run.assert_code(0);
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for task in &self.tasks {
            task.abort();
        }
        let _ = std::fs::remove_dir_all(&self.config_dir);
    }
}

/// A running `kernel watch`, subscribed; killed when dropped.
pub struct Watching {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Watching {
    /// The next line it prints, as JSON (it runs with `--json`).
    pub async fn next_json(&mut self) -> serde_json::Value {
        let line = bounded("watch to print a publication", self.stdout.next_line())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("watch ended before printing a publication"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// The next line whose `field` (a JSON pointer) is `value`, skipping others (publications
    /// of other tests on a shared topic).
    pub async fn next_json_where(&mut self, field: &str, value: &str) -> serde_json::Value {
        bounded(
            format!("watch to print a line with {field} = {value}").as_str(),
            async {
                loop {
                    let line = self.next_json().await;
                    if line.pointer(field).and_then(|v| v.as_str()) == Some(value) {
                        return line;
                    }
                }
            },
        )
        .await
    }

    /// Waits for it to exit by itself (`--count`, `--for`), and answers the exit code.
    pub async fn exit_code(mut self) -> Option<i32> {
        bounded("watch to exit", self.child.wait())
            .await
            .unwrap()
            .code()
    }
}

/// A finished run of the tool.
pub struct Run(pub Output);

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.0.status.code()
    }

    /// Fails the test with both streams unless the exit code is `code`.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Stdout parsed as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.0.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout()))
    }
}
