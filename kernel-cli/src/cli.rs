//! The command line: global flags and one subcommand each.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::colour::ColorChoice;
use crate::duration;

/// Call, inspect, watch and load-test the services of a running platform.
#[derive(Debug, Parser)]
#[command(name = "kernel", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags every subcommand takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// RabbitMQ URL (`amqp://` or `amqps://`).
    #[arg(long, env = "KERNEL_AMQP_URL", global = true, hide_env_values = true)]
    pub(crate) amqp_url: Option<String>,
    /// How long a call may take: `500ms`, `5s`, `2m`.
    #[arg(long, default_value = "5s", value_parser = duration::parse, global = true)]
    pub(crate) timeout: Duration,
    /// Session id to send with calls; default: the one `kernel login` saved.
    #[arg(long, env = "KERNEL_SESSION", global = true, hide_env_values = true)]
    pub(crate) session: Option<String>,
    /// Send no session, even if one is saved.
    #[arg(long, global = true, conflicts_with = "session")]
    pub(crate) anonymous: bool,
    /// Machine-readable JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Colour the human output: `auto` (on a terminal, unless `NO_COLOR` is set), `always`,
    /// `never`.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub(crate) color: ColorChoice,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Call any endpoint with a JSON request and print the JSON response.
    Call {
        /// The service, e.g. `com.example.greeter`.
        service: String,
        /// The endpoint, e.g. `hello`.
        endpoint: String,
        /// The request as JSON (the proto3 JSON mapping); `-` reads it from stdin.
        #[arg(default_value = "{}")]
        request: String,
        /// Check the request (before sending) and the response against the JSON Schema the
        /// service's `jsonschema` endpoint publishes; a mismatch exits 4.
        #[arg(long)]
        check: bool,
    },
    /// A service's `health` endpoint, as a table.
    Health {
        /// The service.
        service: String,
        /// Run the checks now rather than answer the latest samples.
        #[arg(long)]
        run_now: bool,
    },
    /// A service's `stats` endpoint, as a table (needs ADMIN: `kernel login` first).
    Stats {
        /// The service.
        service: String,
    },
    /// The services the registry hears announced.
    Services {
        /// How long to listen for announcements (services announce every 10 s).
        #[arg(long, default_value = "12s", value_parser = duration::parse)]
        wait: Duration,
    },
    /// The instances the registry hears announced, with endpoints and SLAs.
    Instances {
        /// Only this service's instances.
        service: Option<String>,
        /// How long to listen for announcements (services announce every 10 s).
        #[arg(long, default_value = "12s", value_parser = duration::parse)]
        wait: Duration,
    },
    /// Sign in at the login service and save the session for later commands.
    Login {
        /// The user name.
        username: String,
        /// Read the password from stdin (its first line) rather than prompting.
        #[arg(long)]
        password_stdin: bool,
        /// The device named in the session.
        #[arg(long, default_value = "cli")]
        device: String,
        /// The login service.
        #[arg(long, env = "KERNEL_LOGIN_SERVICE", default_value = "kernel.login")]
        login_service: String,
    },
    /// End the saved session at the login service and forget it.
    Logout,
    /// Print each publication on a topic as it arrives, decoded by `--type`, the platform's
    /// own topics, or the type the topic's subscribers announce.
    Watch {
        /// The topic, e.g. `kernel.monitor.healthcheck`.
        topic: String,
        /// Stop after this many publications.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this long.
        #[arg(long = "for", visible_alias = "duration", value_parser = duration::parse)]
        duration: Option<Duration>,
        /// Decode protobuf publications as this message type (full name, e.g.
        /// `kernel.examples.v1.Greeted`), whatever the platform or subscribers say.
        #[arg(long = "type", value_name = "NAME")]
        type_name: Option<String>,
        /// A `FileDescriptorSet` file with more message types (a team's own), for `--type`
        /// and for the types subscribers announce; repeatable.
        #[arg(long, value_name = "FILE")]
        descriptor_set: Vec<PathBuf>,
        /// How long after the start a protobuf publication that neither `--type` nor the
        /// platform's topics name may wait for its subscribers' announcements (services
        /// announce every 10 s); `0s` shows such publications at once.
        #[arg(long, default_value = "12s", value_parser = duration::parse_or_zero)]
        wait: Duration,
    },
    /// Call an endpoint many times and report throughput, latency percentiles and a
    /// latency histogram.
    Bench {
        /// The service.
        service: String,
        /// The endpoint.
        endpoint: String,
        /// The request as JSON.
        #[arg(default_value = "{}")]
        request: String,
        /// How many calls in all; default 100, or no limit when `--duration` is given.
        #[arg(long, short = 'n')]
        count: Option<u64>,
        /// How many calls in flight at once (at most 1024).
        #[arg(long, short = 'c', default_value_t = 4)]
        concurrency: u64,
        /// Start no call after this long (`30s`, `2m`); with `--count`, whichever comes
        /// first. Calls in flight then finish, each within `--timeout`.
        #[arg(long, visible_alias = "for", value_parser = duration::parse)]
        duration: Option<Duration>,
    },
    /// Print a completion script for a shell (`kernel completions bash > ...`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}
