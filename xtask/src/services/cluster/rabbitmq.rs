//! The RabbitMQ cluster: three private nodes from Debian's `rabbitmq-server`, made one cluster
//! with `rabbitmqctl join_cluster`.
//!
//! | node | Erlang node | AMQP | distribution |
//! |---|---|---|---|
//! | `rabbit-1` | `kernel-cluster-1@localhost` | `127.0.0.1:5692` | `127.0.0.1:25692` |
//! | `rabbit-2` | `kernel-cluster-2@localhost` | `127.0.0.1:5693` | `127.0.0.1:25693` |
//! | `rabbit-3` | `kernel-cluster-3@localhost` | `127.0.0.1:5694` | `127.0.0.1:25694` |
//!
//! The three register with one private epmd on `127.0.0.1:14370` (the single node's is on
//! 14369), which `up` starts before the nodes so that they do not race to start it. They share
//! an Erlang cookie, random for each fresh cluster, in each node's `HOME` (its directory), where
//! `rabbitmqctl` finds it too. No TLS listener and no test users: the single node has those.
//!
//! A fresh cluster: the three boot as three one-node clusters, then `rabbit-2` and `rabbit-3`
//! each run `stop_app`, `join_cluster kernel-cluster-1@localhost`, `start_app`. A node killed and
//! started again keeps its mnesia directory, so it rejoins by itself. The cluster is formed when
//! `cluster_status` on every running node lists exactly the running nodes.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{Group, NODES};
use crate::Result;
use crate::services::engine::Engine;
use crate::services::rabbitmq::{Node, SERVER};
use crate::services::{install, probe, process};

const NAMES: [&str; NODES] = ["rabbit-1", "rabbit-2", "rabbit-3"];
const ERLANG_NODES: [&str; NODES] = [
    "kernel-cluster-1@localhost",
    "kernel-cluster-2@localhost",
    "kernel-cluster-3@localhost",
];
const AMQP_PORTS: [u16; NODES] = [5692, 5693, 5694];
/// Each node's AMQP port and Erlang distribution port.
const PORTS: [[u16; 2]; NODES] = [[5692, 25692], [5693, 25693], [5694, 25694]];
const EPMD_PORT: u16 = 14370;
const CLUSTER_NAME: &str = "kernel-cluster";
const COOKIE_FILE: &str = ".erlang.cookie";

/// One node of the cluster.
#[derive(Debug)]
pub(super) struct RabbitNode {
    index: usize,
    node: Node,
}

impl RabbitNode {
    fn cookie_file(&self) -> PathBuf {
        self.node.dir().join(COOKIE_FILE)
    }

    /// `rabbitmq.conf`: the single node's settings, without TLS, with the cluster's name.
    fn config(&self) -> String {
        format!(
            "\
# Written by `cargo xtask services up --cluster`: node {n} of the test cluster (docs/services.md).
listeners.tcp.default = {loopback}:{port}
loopback_users.guest = true
cluster_name = {CLUSTER_NAME}
disk_free_limit.absolute = 50MB
log.file = false
log.console = true
log.console.level = info
",
            n = self.index + 1,
            loopback = probe::LOOPBACK,
            port = AMQP_PORTS[self.index],
        )
    }

    /// Starts `rabbitmqctl cluster_status` on this node, its JSON on stdout.
    fn spawn_cluster_status(&self) -> Result<Child> {
        self.node
            .ctl_command(&["cluster_status", "--formatter", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run rabbitmqctl: {e}").into())
    }
}

impl Engine for RabbitNode {
    fn name(&self) -> &'static str {
        NAMES[self.index]
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
        format!(
            "amqp://guest:guest@{}:{}/%2f",
            probe::LOOPBACK,
            AMQP_PORTS[self.index]
        )
    }

    fn ports(&self) -> &'static [u16] {
        &PORTS[self.index]
    }

    fn check_shared_ports(&self) -> Result<()> {
        self.node.check_epmd()
    }

    fn missing_packages(&self) -> Vec<&'static str> {
        install::unless_present(SERVER, "rabbitmq-server")
            .into_iter()
            .collect()
    }

    fn start(&self) -> Result<Child> {
        if !self.cookie_file().is_file() {
            return Err(format!(
                "{} has no Erlang cookie ({}): `cargo xtask services down --cluster`, then \
                 `up --cluster`, makes a new cluster",
                self.name(),
                self.cookie_file().display()
            )
            .into());
        }
        self.node.write_config(&self.config())?;
        self.node.spawn()
    }

    fn probe(&self) -> Result<String> {
        probe::amqp::connection_start(AMQP_PORTS[self.index])
    }

    fn settle(&self) -> Result<()> {
        self.node.ctl(&["await_startup", "--timeout", "60"])
    }

    fn start_timeout(&self) -> Duration {
        Duration::from_secs(180)
    }

    fn stop(&self, pid: u32) -> Result<()> {
        process::terminate(pid, Duration::from_secs(30))
    }
}

/// The three nodes.
#[derive(Debug)]
pub(super) struct RabbitCluster {
    nodes: [RabbitNode; NODES],
    epmd_log: PathBuf,
}

impl RabbitCluster {
    /// The nodes whose state lives in `<cluster_dir>/rabbit-N`.
    pub(super) fn new(cluster_dir: &Path) -> Self {
        Self {
            nodes: std::array::from_fn(|index| RabbitNode {
                index,
                node: Node::new(
                    cluster_dir.join(NAMES[index]),
                    ERLANG_NODES[index],
                    PORTS[index][1],
                    EPMD_PORT,
                ),
            }),
            epmd_log: cluster_dir.join("epmd.log"),
        }
    }
}

impl Group for RabbitCluster {
    fn engine(&self) -> &'static str {
        "rabbitmq"
    }

    fn nodes(&self) -> [&dyn Engine; NODES] {
        self.nodes.each_ref().map(|node| node as &dyn Engine)
    }

    fn list_var(&self) -> &'static str {
        "KERNEL_AMQP_URL"
    }

    fn node_vars(&self, i: usize) -> Vec<(&'static str, String)> {
        vec![
            ("URL", self.nodes[i].address()),
            ("NODENAME", ERLANG_NODES[i].to_owned()),
        ]
    }

    fn is_set_up(&self, i: usize) -> bool {
        let node = &self.nodes[i];
        node.cookie_file().is_file() && node.node.dir().join("mnesia").is_dir()
    }

    fn prepare_fresh(&self) -> Result<()> {
        let cookie = random_cookie()?;
        for node in &self.nodes {
            fs::create_dir_all(node.node.dir())?;
            node.node.wipe()?;
            write_cookie(&node.cookie_file(), &cookie)?;
        }
        Ok(())
    }

    fn before_start(&self) -> Result<()> {
        if probe::epmd(EPMD_PORT).is_ok() {
            return Ok(());
        }
        let first = &self.nodes[0].node;
        first.check_epmd()?;
        let mut epmd = first.command("epmd");
        epmd.arg("-daemon");
        // `-daemon` forks and returns; the daemon keeps nothing of ours open.
        let status = process::spawn_detached(&mut epmd, &self.epmd_log)?.wait()?;
        if !status.success() {
            return Err(format!(
                "epmd -daemon failed ({status}); read {}",
                self.epmd_log.display()
            )
            .into());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = probe::epmd(EPMD_PORT) {
            if Instant::now() >= deadline {
                return Err(format!("epmd is not answering on {EPMD_PORT} after 10 s: {e}").into());
            }
            std::thread::sleep(process::POLL);
        }
        Ok(())
    }

    fn form(&self) -> Result<()> {
        let seed = ERLANG_NODES[0];
        for node in &self.nodes[1..] {
            let begun = Instant::now();
            node.node.ctl(&["stop_app"])?;
            node.node.ctl(&["join_cluster", seed])?;
            node.node.ctl(&["start_app"])?;
            eprintln!(
                "services: {} joined {seed} in {:.1?}",
                node.name(),
                begun.elapsed()
            );
        }
        Ok(())
    }

    fn check(&self, live: &[usize]) -> Result<String> {
        let mut expected: Vec<&str> = live.iter().map(|&i| ERLANG_NODES[i]).collect();
        expected.sort_unstable();
        // One `rabbitmqctl` per node, all at once: each boots an Erlang VM (about a second).
        let children: Vec<(usize, Result<Child>)> = live
            .iter()
            .map(|&i| (i, self.nodes[i].spawn_cluster_status()))
            .collect();
        let mut failures = Vec::new();
        for (i, child) in children {
            let output = child?.wait_with_output()?;
            let stdout = String::from_utf8_lossy(&output.stdout);
            let mut running = running_nodes(&stdout).unwrap_or_default();
            running.sort_unstable();
            if !output.status.success() || running != expected {
                let stderr = String::from_utf8_lossy(&output.stderr);
                failures.push(format!(
                    "{} sees running nodes {running:?} ({})",
                    NAMES[i],
                    stderr.trim()
                ));
            }
        }
        if failures.is_empty() {
            Ok(format!(
                "{} running nodes, each sees all: {}",
                expected.len(),
                expected.join(", ")
            ))
        } else {
            Err(format!("expected {expected:?}; {}", failures.join("; ")).into())
        }
    }

    fn form_timeout(&self) -> Duration {
        Duration::from_secs(90)
    }

    fn after_stop(&self) {
        self.nodes[0].node.stop_epmd();
    }
}

/// The `running_nodes` of `rabbitmqctl cluster_status --formatter json`.
fn running_nodes(json: &str) -> Option<Vec<String>> {
    let key = json.find("\"running_nodes\"")?;
    let open = key + json[key..].find('[')? + 1;
    let close = open + json[open..].find(']')?;
    Some(
        json[open..close]
            .split(',')
            .map(|name| name.trim().trim_matches('"').to_owned())
            .filter(|name| !name.is_empty())
            .collect(),
    )
}

/// 20 random bytes from `/dev/urandom`, in upper-case hex (an Erlang cookie is an atom).
fn random_cookie() -> Result<String> {
    let mut bytes = [0_u8; 20];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02X}")).collect())
}

/// Writes the cookie owner-read-only, as Erlang requires.
fn write_cookie(path: &Path, cookie: &str) -> Result<()> {
    let _ = fs::remove_file(path);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)
        .and_then(|mut file| file.write_all(cookie.as_bytes()))
        .map_err(|e| format!("cannot write the Erlang cookie {}: {e}", path.display()).into())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn running_nodes_are_read_from_cluster_status() {
        let json = r#"{"alarms":[],"cluster_name":"kernel-cluster","disk_nodes":["a@localhost","b@localhost"],"running_nodes":["b@localhost","a@localhost"],"versions":{}}"#;
        assert_eq!(running_nodes(json).unwrap(), ["b@localhost", "a@localhost"]);
        assert_eq!(
            running_nodes(r#"{"running_nodes": [ ]}"#).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(running_nodes("Error: unable to perform an operation"), None);
    }

    #[test]
    fn each_node_listens_on_its_own_port_in_the_named_cluster() {
        let cluster = RabbitCluster::new(Path::new("/x/.services/cluster"));
        let config = cluster.nodes[1].config();
        assert!(config.contains("listeners.tcp.default = 127.0.0.1:5693\n"));
        assert!(config.contains("cluster_name = kernel-cluster\n"));
        assert!(!config.contains("ssl"));
        let env = cluster.nodes[2].node.env();
        assert!(env.contains(&("RABBITMQ_NODENAME", "kernel-cluster-3@localhost".to_owned())));
        assert!(env.contains(&("ERL_EPMD_PORT", "14370".to_owned())));
        assert!(env.contains(&("HOME", "/x/.services/cluster/rabbit-3/".to_owned())));
    }

    #[test]
    fn the_cookie_is_random_hex_and_readable_by_its_owner_only() {
        let (a, b) = (random_cookie().unwrap(), random_cookie().unwrap());
        assert_eq!(a.len(), 40);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        let dir = std::env::temp_dir().join(format!("xtask-cookie-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(COOKIE_FILE);
        write_cookie(&path, &a).unwrap();
        write_cookie(&path, &b).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), b);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o400);
        fs::remove_dir_all(&dir).unwrap();
    }
}
