//! A private RabbitMQ node from Debian's `rabbitmq-server`, beside any system broker.
//!
//! Debian's `/usr/sbin/rabbitmq-server` wrapper switches to the `rabbitmq` user and the system
//! directories, so we call the real script `/usr/lib/rabbitmq/bin/rabbitmq-server` as ourselves,
//! in the foreground of a detached process, with every location moved under
//! `.services/rabbitmq/` by environment variables:
//!
//! | what | value |
//! |---|---|
//! | node name | `kernel-test@localhost` |
//! | AMQP listener | `127.0.0.1:5682` (in `rabbitmq.conf`) |
//! | AMQPS (TLS) listener | `127.0.0.1:5683`, certificate for `localhost`/`127.0.0.1`/`::1` from `.services/tls/` (see [`tls`](super::tls)), client certificates not asked for |
//! | Erlang distribution | `127.0.0.1:25682`, private epmd on `127.0.0.1:14369` |
//! | `HOME` (Erlang cookie), mnesia, pid file, config | under `.services/rabbitmq/` |
//! | plugins | none (`enabled_plugins` is `[].`) |
//! | log | `.services/rabbitmq/rabbitmq.log` (console output only) |
//!
//! Besides `guest`, the node has the [test users](users), each with every permission on
//! `/`: tests that need two distinct, broker-verified identities (the `user_id` property) log in
//! as them. `up` creates them on every node it finds without them, started by it or earlier.
//!
//! Ready when an AMQP client gets `Connection.Start`, on the plain port and through TLS verified
//! with our CA (`openssl s_client`), then `rabbitmqctl await_startup` agrees. A running node whose
//! `rabbitmq.conf` is not the one this xtask writes (an older xtask's, without the TLS listener),
//! or whose TLS files are gone, is [outdated](Engine::outdated): `up` restarts it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use super::engine::Engine;
use super::tls::Tls;
use super::{install, probe, process};
use crate::Result;

mod node;
mod users;

pub(super) use node::{Node, SERVER};
pub(super) use users::TEST_USERS;

/// The AMQP port the tests connect to.
pub(super) const AMQP_PORT: u16 = 5682;
/// The AMQPS (AMQP over TLS) port the tests connect to.
pub(super) const TLS_PORT: u16 = 5683;
const DIST_PORT: u16 = 25682;
const EPMD_PORT: u16 = 14369;
const NODE: &str = "kernel-test@localhost";

/// The private RabbitMQ node.
#[derive(Debug)]
pub(super) struct RabbitMq {
    node: Node,
    tls: Tls,
}

impl RabbitMq {
    /// The node whose state lives in `dir`, serving TLS with the certificate in `tls`.
    pub(super) fn new(dir: PathBuf, tls: Tls) -> Self {
        Self {
            node: Node::new(dir, NODE, DIST_PORT, EPMD_PORT),
            tls,
        }
    }

    /// `rabbitmq.conf`: the settings `rabbitmq-env` would otherwise read from `/etc/rabbitmq`.
    fn config(&self) -> String {
        let (ca, cert, key) = (
            self.tls.ca_file(),
            self.tls.cert_file(),
            self.tls.key_file(),
        );
        format!(
            "\
# Written by `cargo xtask services up`: a private broker for the tests (docs/services.md).
listeners.tcp.default = {loopback}:{AMQP_PORT}
listeners.ssl.default = {loopback}:{TLS_PORT}
ssl_options.cacertfile = {ca}
ssl_options.certfile = {cert}
ssl_options.keyfile = {key}
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
loopback_users.guest = true
disk_free_limit.absolute = 50MB
log.file = false
log.console = true
log.console.level = info
",
            loopback = probe::LOOPBACK,
            ca = ca.display(),
            cert = cert.display(),
            key = key.display(),
        )
    }

    /// `KERNEL_AMQPS_URL`: the TLS listener, by the name its certificate carries.
    pub(super) fn tls_address(&self) -> String {
        format!("amqps://guest:guest@localhost:{TLS_PORT}/%2f")
    }

    /// `KERNEL_AMQP_CA`: the CA certificate a TLS client trusts.
    pub(super) fn ca_file(&self) -> PathBuf {
        self.tls.ca_file()
    }

    /// Writes the config files into a fresh state directory (old mnesia and logs removed), and
    /// makes the TLS certificates if they are missing.
    fn prepare(&self) -> Result<()> {
        self.tls.ensure()?;
        self.node.wipe()?;
        self.node.write_config(&self.config())
    }

    fn config_file(&self) -> PathBuf {
        self.node.config_file()
    }
}

impl Engine for RabbitMq {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    fn dir(&self) -> &Path {
        self.node.dir()
    }

    fn pid_file(&self) -> PathBuf {
        self.node.pid_file()
    }

    fn log_file(&self) -> PathBuf {
        self.node.log_file()
    }

    fn address(&self) -> String {
        format!("amqp://guest:guest@{}:{AMQP_PORT}/%2f", probe::LOOPBACK)
    }

    fn ports(&self) -> &'static [u16] {
        &[AMQP_PORT, TLS_PORT, DIST_PORT]
    }

    fn check_shared_ports(&self) -> Result<()> {
        self.node.check_epmd()
    }

    fn missing_packages(&self) -> Vec<&'static str> {
        [
            install::unless_present(SERVER, "rabbitmq-server"),
            install::unless_present(probe::tls::OPENSSL, "openssl"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn start(&self) -> Result<Child> {
        self.prepare()?;
        self.node.spawn()
    }

    fn probe(&self) -> Result<String> {
        let plain = probe::amqp::connection_start(AMQP_PORT)?;
        probe::tls::amqp_connection_start(TLS_PORT, &self.tls.ca_file())?;
        Ok(format!("{plain}, TLS on {TLS_PORT} verified"))
    }

    fn outdated(&self) -> Option<String> {
        let config = self.config_file();
        if fs::read_to_string(&config).ok()? != self.config() {
            return Some(format!(
                "{} is not the one this xtask writes (an older xtask's?)",
                config.display()
            ));
        }
        (!self.tls.is_complete()).then(|| "its TLS certificate files are missing".to_owned())
    }

    fn settle(&self) -> Result<()> {
        self.node.ctl(&["await_startup", "--timeout", "60"])
    }

    fn start_timeout(&self) -> Duration {
        Duration::from_secs(120)
    }

    fn stop(&self, pid: u32) -> Result<()> {
        let stopped = match self.node.ctl(&["stop"]) {
            Ok(()) => process::wait_exit(pid, Duration::from_secs(30)),
            Err(e) => {
                eprintln!("services: {e}; sending SIGTERM to pid {pid}");
                false
            }
        };
        if !stopped {
            process::terminate(pid, Duration::from_secs(10))?;
        }
        self.node.stop_epmd();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rabbit() -> RabbitMq {
        RabbitMq::new(
            PathBuf::from("/x/.services/rabbitmq"),
            Tls::new(PathBuf::from("/x/.services/tls")),
        )
    }

    #[test]
    fn config_listens_on_loopback_at_the_private_ports() {
        let config = rabbit().config();
        assert!(config.contains(&format!("listeners.tcp.default = 127.0.0.1:{AMQP_PORT}\n")));
        assert!(config.contains(&format!("listeners.ssl.default = 127.0.0.1:{TLS_PORT}\n")));
    }

    #[test]
    fn tls_listener_uses_the_generated_certificate_and_asks_for_none() {
        let config = rabbit().config();
        for line in [
            "ssl_options.cacertfile = /x/.services/tls/ca.pem\n",
            "ssl_options.certfile = /x/.services/tls/server.pem\n",
            "ssl_options.keyfile = /x/.services/tls/server.key\n",
            "ssl_options.verify = verify_none\n",
            "ssl_options.fail_if_no_peer_cert = false\n",
        ] {
            assert!(config.contains(line), "{line}");
        }
        assert_eq!(
            rabbit().tls_address(),
            format!("amqps://guest:guest@localhost:{TLS_PORT}/%2f")
        );
    }

    #[test]
    fn a_node_with_another_config_or_without_its_tls_files_is_outdated() {
        let root = std::env::temp_dir().join(format!("xtask-rabbit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let rabbit = RabbitMq::new(root.join("rabbitmq"), Tls::new(root.join("tls")));
        fs::create_dir_all(root.join("rabbitmq")).unwrap();
        assert_eq!(rabbit.outdated(), None, "no config: nothing to compare");

        rabbit.tls.ensure().unwrap();
        fs::write(rabbit.config_file(), rabbit.config()).unwrap();
        assert_eq!(rabbit.outdated(), None);

        let older = rabbit
            .config()
            .replace("listeners.ssl.default", "# listeners.ssl.default");
        fs::write(rabbit.config_file(), older).unwrap();
        assert!(rabbit.outdated().unwrap().contains("rabbitmq.conf"));

        fs::write(rabbit.config_file(), rabbit.config()).unwrap();
        fs::remove_file(rabbit.tls.key_file()).unwrap();
        assert!(rabbit.outdated().unwrap().contains("TLS"));
        fs::remove_dir_all(&root).unwrap();
    }
}
