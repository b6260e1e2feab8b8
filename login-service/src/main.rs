//! `kernel-login`: serve the login service, or add a user to its credential store.
//!
//! ```sh
//! printf '%s\n' "$PASSWORD" | kernel-login user add ada --roles ADMIN,CUSTOMER --password-stdin
//! kernel-login serve
//! ```
//!
//! Settings come from flags or `KERNEL_*` variables (`kernel-login serve --help`); the broker
//! and server settings from the kernel's own configuration (`KERNEL_AMQP_URL`, `kernel.toml`).

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kernel::prelude::*;
use kernel_auth::TokenSigner;
use kernel_login::{
    AttemptPolicy, CredentialStore, LoginService, MemoryCredentialStore, retired_key_from_str,
    signer_from_base64,
};
use tokio::io::AsyncReadExt as _;

/// The login service of the kernel: passwords, sessions, signed session tokens.
#[derive(Parser)]
#[command(name = "kernel-login", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the login service until ctrl-c or SIGTERM.
    Serve(Serve),
    /// Manages users.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Adds a user (or, with --replace, sets their password and roles).
    Add(AddUser),
}

/// Where users are kept.
#[derive(Args)]
struct StoreArgs {
    /// Cassandra contact points (host:port,host:port); unset: users in memory (they vanish
    /// with the process, so only for trying things out).
    #[arg(long, env = "KERNEL_CASSANDRA_HOSTS")]
    cassandra_hosts: Option<String>,
    /// The keyspace of the users table.
    #[arg(long, env = "KERNEL_LOGIN_KEYSPACE", default_value = "login")]
    keyspace: String,
    /// The keyspace's replication factor, if it has to be created.
    #[arg(long, env = "KERNEL_LOGIN_REPLICATION_FACTOR", default_value_t = 3)]
    replication_factor: u32,
}

#[derive(Args)]
struct Serve {
    #[command(flatten)]
    store: StoreArgs,
    /// The Ed25519 signing key: base64 of a 32-byte seed (`head -c 32 /dev/urandom | base64`).
    /// Unset: a fresh key at every start (development only: every restart invalidates every
    /// token).
    #[arg(long, env = "KERNEL_LOGIN_SIGNING_KEY", hide_env_values = true)]
    signing_key: Option<String>,
    /// The signing key's id, named in every token.
    #[arg(long, env = "KERNEL_LOGIN_KEY_ID", default_value = "k1")]
    key_id: String,
    /// Retired public keys still answered by `publickeys`: `<key id>:<base64>`, comma-separated.
    #[arg(long, env = "KERNEL_LOGIN_RETIRED_KEYS", value_delimiter = ',')]
    retired_keys: Vec<String>,
    /// Session lifetime, seconds.
    #[arg(long, env = "KERNEL_LOGIN_SESSION_LIFETIME_SECS", default_value_t = 8 * 3600)]
    session_lifetime_secs: u64,
    /// Lifetime of a `no_expire` session (never for ADMIN users), seconds.
    #[arg(long, env = "KERNEL_LOGIN_LONG_SESSION_LIFETIME_SECS", default_value_t = 30 * 24 * 3600)]
    long_session_lifetime_secs: u64,
    /// Failed sign-ins per username before a lockout.
    #[arg(long, env = "KERNEL_LOGIN_MAX_FAILURES", default_value_t = AttemptPolicy::DEFAULT_MAX_FAILURES)]
    max_failures: usize,
    /// How long a username stays locked, seconds (failures count over the same window).
    #[arg(long, env = "KERNEL_LOGIN_LOCKOUT_SECS", default_value_t = 300)]
    lockout_secs: u64,
}

#[derive(Args)]
struct AddUser {
    #[command(flatten)]
    store: StoreArgs,
    /// The name the user signs in with.
    username: String,
    /// The user's roles, comma-separated (e.g. ADMIN,CUSTOMER).
    #[arg(long, value_delimiter = ',')]
    roles: Vec<String>,
    /// Read the password from standard input (one line). Passwords are never arguments.
    #[arg(long, required = true)]
    password_stdin: bool,
    /// Replace the user's password and roles if they exist.
    #[arg(long)]
    replace: bool,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    let config = kernel::Config::load()?;
    // Log lines (and spans, with `[log] otlp_endpoint`) as every kernel service makes them.
    let _telemetry = kernel::telemetry::init(kernel_auth::DEFAULT_LOGIN_SERVICE, &config.log)?;
    match cli.command {
        Command::Serve(serve) => run(serve, &config).await,
        Command::User(UserCommand::Add(add)) => add_user(add).await,
    }
}

async fn run(serve: Serve, config: &kernel::Config) -> Result<(), Error> {
    let store = store(&serve.store, false).await?;
    let signer = match &serve.signing_key {
        Some(seed) => signer_from_base64(&serve.key_id, seed)?,
        None => {
            let key_id = format!("dev-{}", uuid::Uuid::new_v4().simple());
            tracing::warn!(
                %key_id,
                "KERNEL_LOGIN_SIGNING_KEY is not set: signing with a fresh key; every token dies with this process"
            );
            TokenSigner::generate(key_id).map_err(|error| {
                Error::internal_server_error(kernel_login::codes::BAD_KEY, error.to_string())
            })?
        }
    };
    let window = Duration::from_secs(serve.lockout_secs);
    let mut builder = LoginService::builder(store, signer)
        .session_lifetime(Duration::from_secs(serve.session_lifetime_secs))
        .long_session_lifetime(Duration::from_secs(serve.long_session_lifetime_secs))
        .attempts(AttemptPolicy {
            max_failures: serve.max_failures,
            window,
            lockout: window,
            ..AttemptPolicy::default()
        });
    for entry in serve
        .retired_keys
        .iter()
        .filter(|entry| !entry.trim().is_empty())
    {
        let (key_id, public_key) = retired_key_from_str(entry)?;
        builder = builder.retired_key(key_id, public_key);
    }
    let login = builder.build()?;

    let client = Client::from_env().await?;
    let service = login
        .service(&client)
        .config(&config.server)
        .loaded_config(
            "login",
            serde_json::json!({
                "key_id": serve.key_id,
                "signing_key": if serve.signing_key.is_some() { "***" } else { "generated" },
                "session_lifetime_secs": serve.session_lifetime_secs,
                "long_session_lifetime_secs": serve.long_session_lifetime_secs,
                "max_failures": serve.max_failures,
                "lockout_secs": serve.lockout_secs,
                "cassandra_hosts": serve.store.cassandra_hosts,
                "keyspace": serve.store.keyspace,
            }),
        )
        .build()?;
    service.serve_with_shutdown(kernel::shutdown_signal()).await
}

async fn add_user(add: AddUser) -> Result<(), Error> {
    let store = store(&add.store, true).await?;
    let mut password = String::new();
    tokio::io::stdin()
        .take(kernel_login::MAX_PASSWORD_LEN as u64 + 2)
        .read_to_string(&mut password)
        .await
        .map_err(|error| {
            Error::bad_request(kernel_login::codes::BAD_PASSWORD, error.to_string())
        })?;
    let password = password.lines().next().unwrap_or_default().to_owned();
    // Hashing is all this process does: no keys, no sessions.
    let signer = TokenSigner::generate("cli").map_err(|error| {
        Error::internal_server_error(kernel_login::codes::BAD_KEY, error.to_string())
    })?;
    let login = LoginService::builder(store, signer).build()?;
    let user = login
        .put_user(&add.username, &password, add.roles, add.replace)
        .await?;
    tracing::info!(username = %user.username, user_id = %user.user_id, roles = ?user.roles, "user saved");
    Ok(())
}

async fn store(args: &StoreArgs, persistent: bool) -> Result<Arc<dyn CredentialStore>, Error> {
    match &args.cassandra_hosts {
        Some(hosts) => cassandra(hosts, args).await,
        None if persistent => Err(Error::bad_request(
            kernel_login::codes::STORE,
            "adding a user needs a persistent store: set KERNEL_CASSANDRA_HOSTS (or --cassandra-hosts)",
        )),
        None => {
            tracing::warn!("no KERNEL_CASSANDRA_HOSTS: users live in memory, and there are none");
            Ok(Arc::new(MemoryCredentialStore::new()))
        }
    }
}

#[cfg(feature = "cassandra")]
async fn cassandra(hosts: &str, args: &StoreArgs) -> Result<Arc<dyn CredentialStore>, Error> {
    let store = kernel_login::CassandraCredentialStore::builder(hosts)
        .keyspace(&args.keyspace)
        .replication_factor(args.replication_factor)
        .connect()
        .await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "cassandra"))]
async fn cassandra(_: &str, _: &StoreArgs) -> Result<Arc<dyn CredentialStore>, Error> {
    Err(Error::internal_server_error(
        kernel_login::codes::STORE,
        "KERNEL_CASSANDRA_HOSTS is set but kernel-login was built without the `cassandra` feature",
    ))
}
