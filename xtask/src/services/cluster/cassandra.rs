//! The Cassandra ring: three nodes from the single node's Maven jars, on three loopback
//! addresses with the same ports.
//!
//! | node | address | CQL | storage | token |
//! |---|---|---|---|---|
//! | `cassandra-1` | `127.0.0.1` | `29042` | `27000` | -9223372036854775808 |
//! | `cassandra-2` | `127.0.0.2` | `29042` | `27000` | -3074457345618258603 |
//! | `cassandra-3` | `127.0.0.3` | `29042` | `27000` | 3074457345618258602 |
//!
//! Three addresses rather than three ports: drivers (the scylla crate among them) reach every
//! peer listed in `system.peers` on the port of the node they first connected to.
//!
//! Every node is a seed, owns one token (the ring split in three) and has `auto_bootstrap: false`,
//! so on a new, empty ring all three start at once and none waits for another; their heaps are
//! half the single node's. The jars are the single node's `lib/`, reached through the link
//! `.services/cluster/cassandra-lib` (so a ring node's command line never names the single node's
//! directory, which is how the single node's pid is recognised).
//!
//! The ring is formed when every running node lists two peers in `system.peers` and coordinates
//! a read of `system_distributed` (replication factor 3) at a consistency that needs every
//! running node (`THREE` with three): a node that thinks a replica is down refuses it at once.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use super::{Group, NODES};
use crate::Result;
use crate::services::cassandra::config::{self, NodeYaml};
use crate::services::cassandra::{ensure_free_space, jamm};
use crate::services::engine::Engine;
use crate::services::probe::cql::{self, Consistency};
use crate::services::{install, process};

const NAMES: [&str; NODES] = ["cassandra-1", "cassandra-2", "cassandra-3"];
const ADDRESSES: [Ipv4Addr; NODES] = [
    Ipv4Addr::new(127, 0, 0, 1),
    Ipv4Addr::new(127, 0, 0, 2),
    Ipv4Addr::new(127, 0, 0, 3),
];
const NATIVE_PORT: u16 = 29042;
const STORAGE_PORT: u16 = 27000;
/// The Murmur3 ring split in three.
const TOKENS: [&str; NODES] = [
    "-9223372036854775808",
    "-3074457345618258603",
    "3074457345618258602",
];
const CLUSTER_NAME: &str = "kernel-cluster";
const HEAP: [&str; 2] = ["-Xms256m", "-Xmx512m"];
/// The link to the single node's jars, in the cluster's directory.
const LIB_LINK: &str = "cassandra-lib";

const PEERS_QUERY: &str = "SELECT peer FROM system.peers";
/// A table of a keyspace with replication factor 3 (Cassandra makes it on every ring).
const REPLICATED_QUERY: &str =
    "SELECT keyspace_name FROM system_distributed.repair_history LIMIT 1";

/// One node of the ring.
#[derive(Debug)]
pub(super) struct RingNode {
    index: usize,
    dir: PathBuf,
    lib: PathBuf,
}

impl RingNode {
    fn socket(&self) -> SocketAddr {
        SocketAddr::from((ADDRESSES[self.index], NATIVE_PORT))
    }

    fn yaml(&self) -> String {
        config::cassandra_yaml(&NodeYaml {
            cluster: CLUSTER_NAME,
            address: ADDRESSES[self.index],
            native_port: NATIVE_PORT,
            storage_port: STORAGE_PORT,
            seeds: &ADDRESSES,
            initial_token: TOKENS[self.index],
        })
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
}

impl Engine for RingNode {
    fn name(&self) -> &'static str {
        NAMES[self.index]
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("cassandra.pid")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("cassandra.log")
    }

    fn address(&self) -> String {
        self.socket().to_string()
    }

    fn host(&self) -> Ipv4Addr {
        ADDRESSES[self.index]
    }

    fn ports(&self) -> &'static [u16] {
        &[NATIVE_PORT, STORAGE_PORT]
    }

    fn missing_packages(&self) -> Vec<&'static str> {
        install::java17()
            .is_none()
            .then_some(install::JDK17_PACKAGE)
            .into_iter()
            .collect()
    }

    fn start(&self) -> Result<Child> {
        let java = install::java17().ok_or("JDK 17 not found under /usr/lib/jvm")?;
        fs::create_dir_all(&self.dir)?;
        ensure_free_space(&self.dir)?;
        for sub in ["run/logs", "run/tmp", "run/triggers", "conf"] {
            fs::create_dir_all(self.dir.join(sub))?;
        }
        fs::write(self.dir.join("conf/cassandra.yaml"), self.yaml())?;
        fs::write(self.dir.join("conf/logback.xml"), config::LOGBACK_XML)?;
        let mut command = Command::new(java);
        process::scrub_java_env(&mut command)
            .args(
                config::jvm_args(&self.dir, &self.lib, &jamm(&self.lib)?, HEAP)
                    .into_iter()
                    .filter(|flag| flag != config::UNSAFE_SYSTEM),
            )
            .arg(config::MAIN)
            .current_dir(&self.dir);
        let child = process::spawn_detached(&mut command, &self.log_file())?;
        process::write_pid(&self.pid_file(), child.id())?;
        Ok(child)
    }

    fn probe(&self) -> Result<String> {
        cql::release_version_at(self.socket()).map(|version| format!("Cassandra {version}"))
    }

    fn start_timeout(&self) -> Duration {
        Duration::from_secs(300)
    }

    fn stop(&self, pid: u32) -> Result<()> {
        process::terminate(pid, Duration::from_secs(60))
    }
}

/// The three nodes.
#[derive(Debug)]
pub(super) struct Ring {
    lib: PathBuf,
    nodes: [RingNode; NODES],
}

impl Ring {
    /// The nodes whose state lives in `<cluster_dir>/cassandra-N`.
    pub(super) fn new(cluster_dir: &Path) -> Self {
        let lib = cluster_dir.join(LIB_LINK);
        Self {
            nodes: std::array::from_fn(|index| RingNode {
                index,
                dir: cluster_dir.join(NAMES[index]),
                lib: lib.clone(),
            }),
            lib,
        }
    }

    /// Points `cassandra-lib` at the jars in `target` (the single node's `lib/`).
    pub(super) fn link_jars(&self, target: &Path) -> Result<()> {
        if fs::read_link(&self.lib).is_ok_and(|current| current == target) {
            return Ok(());
        }
        let _ = fs::remove_file(&self.lib);
        symlink(target, &self.lib).map_err(|e| {
            format!(
                "cannot link {} to {}: {e}",
                self.lib.display(),
                target.display()
            )
            .into()
        })
    }
}

impl Group for Ring {
    fn engine(&self) -> &'static str {
        "cassandra"
    }

    fn nodes(&self) -> [&dyn Engine; NODES] {
        self.nodes.each_ref().map(|node| node as &dyn Engine)
    }

    fn list_var(&self) -> &'static str {
        "KERNEL_CASSANDRA_HOSTS"
    }

    fn node_vars(&self, i: usize) -> Vec<(&'static str, String)> {
        vec![("HOST", self.nodes[i].address())]
    }

    fn is_set_up(&self, i: usize) -> bool {
        self.nodes[i].run_dir().join("data").is_dir()
    }

    fn prepare_fresh(&self) -> Result<()> {
        for node in &self.nodes {
            let run = node.run_dir();
            if run.exists() {
                fs::remove_dir_all(&run)
                    .map_err(|e| format!("cannot remove {}: {e}", run.display()))?;
            }
        }
        Ok(())
    }

    fn check(&self, live: &[usize]) -> Result<String> {
        let consistency = Consistency::of(live.len()).ok_or("no running node to ask")?;
        for &i in live {
            let node = &self.nodes[i];
            let peers = cql::row_count(node.socket(), PEERS_QUERY, Consistency::One)
                .map_err(|e| format!("{}: {e}", NAMES[i]))?;
            if peers != 2 {
                return Err(format!("{} lists {peers} peers, not 2", NAMES[i]).into());
            }
            cql::row_count(node.socket(), REPLICATED_QUERY, consistency).map_err(|e| {
                format!(
                    "{} cannot read at {consistency:?} (does it see the others up?): {e}",
                    NAMES[i]
                )
            })?;
        }
        Ok(format!(
            "{} running nodes, each lists 2 peers and reads at {consistency:?}",
            live.len()
        ))
    }

    fn form_timeout(&self) -> Duration {
        Duration::from_secs(120)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_nodes_share_ports_on_their_own_addresses_and_split_the_ring() {
        let ring = Ring::new(Path::new("/x/.services/cluster"));
        let yaml = ring.nodes[2].yaml();
        for line in [
            "listen_address: 127.0.0.3",
            "rpc_address: 127.0.0.3",
            "native_transport_port: 29042",
            "storage_port: 27000",
            "initial_token: '3074457345618258602'",
            "cluster_name: 'kernel-cluster'",
            "auto_bootstrap: false",
            "      - seeds: \"127.0.0.1:27000,127.0.0.2:27000,127.0.0.3:27000\"",
        ] {
            assert!(yaml.lines().any(|l| l == line), "missing {line:?}");
        }
        assert_eq!(ring.nodes[1].address(), "127.0.0.2:29042");
        let step = |a: &str, b: &str| b.parse::<i128>().unwrap() - a.parse::<i128>().unwrap();
        assert_eq!(step(TOKENS[0], TOKENS[1]), step(TOKENS[1], TOKENS[2]));
        assert!((step(TOKENS[2], "9223372036854775807") - step(TOKENS[0], TOKENS[1])).abs() <= 2);
    }

    #[test]
    fn the_jars_are_reached_through_the_clusters_own_link() {
        let root = std::env::temp_dir().join(format!("xtask-ring-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let (cluster_dir, jars) = (root.join("cluster"), root.join("cassandra/lib"));
        fs::create_dir_all(&cluster_dir).unwrap();
        fs::create_dir_all(&jars).unwrap();
        let ring = Ring::new(&cluster_dir);
        ring.link_jars(&jars).unwrap();
        ring.link_jars(&jars).unwrap();
        assert_eq!(fs::read_link(cluster_dir.join(LIB_LINK)).unwrap(), jars);
        assert_eq!(ring.nodes[0].lib, cluster_dir.join(LIB_LINK));
        fs::remove_dir_all(&root).unwrap();
    }
}
