//! `cargo xtask services up --cluster`: three RabbitMQ nodes in one cluster, a three-server
//! ZooKeeper ensemble and a three-node Cassandra ring on loopback, for fault tests; and
//! `services kill NODE` / `services start NODE` to take one node away and bring it back.
//!
//! | engine | nodes | tests connect to |
//! |---|---|---|
//! | RabbitMQ | `rabbit-1..3` (`kernel-cluster-N@localhost`) | `127.0.0.1:5692`, `:5693`, `:5694` |
//! | ZooKeeper | `zk-1..3` | `127.0.0.1:2291`, `:2292`, `:2293` |
//! | Cassandra | `cassandra-1..3` | `127.0.0.1:29042`, `127.0.0.2:29042`, `127.0.0.3:29042` |
//!
//! The cluster lives beside the single nodes and never touches them: its state is under
//! `.services/cluster/<node>/`, its ports, node names and epmd are its own, its lock is
//! `.services/cluster/lock`, and its addresses go to `.services/cluster.env`. It shares only
//! what it reads: the installed packages and Cassandra's jars (`.services/cassandra/lib`).
//!
//! Each engine is a [`Group`] of three nodes. `up` starts every node that is not running, all at
//! once, and waits until each answers its protocol (the single nodes' probes), then until the
//! three form one cluster ([`Group::check`]). A group none of whose nodes runs starts fresh (its
//! previous state wiped, as a single node's is); a node started beside running ones keeps its
//! state and rejoins them, which is also what `start NODE` does.

mod cassandra;
mod commands;
mod rabbitmq;
mod zookeeper;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Duration;

use self::cassandra::Ring;
pub(super) use self::commands::{down, kill, start, status, up};
use self::rabbitmq::RabbitCluster;
use self::zookeeper::Ensemble;
use super::cassandra::Cassandra;
use super::engine::Engine;
use super::install;
use crate::Result;

/// Nodes per engine.
const NODES: usize = 3;

/// `<state>/cluster`: every node's directory, and the cluster's lock.
const CLUSTER_DIR: &str = "cluster";
/// `<state>/cluster.env`: the addresses, as `up --cluster` prints them.
const ENV_FILE: &str = "cluster.env";
/// The variable listing every node's name, in the order of the address lists.
const NODES_VAR: &str = "KERNEL_CLUSTER_NODES";

/// Three nodes of one engine that form one cluster.
trait Group {
    /// `rabbitmq`, `zookeeper`, `cassandra`.
    fn engine(&self) -> &'static str;
    /// The nodes; node `i` is named `<prefix>-<i + 1>`.
    fn nodes(&self) -> [&dyn Engine; NODES];
    /// The variable with every node's address, comma-separated, e.g. `KERNEL_AMQP_URL`.
    fn list_var(&self) -> &'static str;
    /// Node `i`'s own variables by suffix, e.g. `("URL", …)`; the prefix is the node's name.
    fn node_vars(&self, i: usize) -> Vec<(&'static str, String)>;
    /// Whether node `i` has state from an earlier `up --cluster` that it can restart from.
    fn is_set_up(&self, i: usize) -> bool;
    /// Before a fresh start of all three (none runs): wipes the previous cluster's state and
    /// writes what the nodes share (RabbitMQ's Erlang cookie).
    fn prepare_fresh(&self) -> Result<()>;
    /// Before any node is spawned: starts what the nodes share while they run (RabbitMQ's
    /// epmd).
    fn before_start(&self) -> Result<()> {
        Ok(())
    }
    /// Once the three nodes of a fresh start answer: makes them one cluster (RabbitMQ's
    /// `join_cluster`). ZooKeeper and Cassandra form theirs by themselves.
    fn form(&self) -> Result<()> {
        Ok(())
    }
    /// One look at the cluster: each node in `live` (indices) sees exactly the nodes of `live`.
    /// Returns what it saw, e.g. `leader zk-2, followers zk-1, zk-3`.
    fn check(&self, live: &[usize]) -> Result<String>;
    /// How long [`check`](Group::check) may take to pass once the nodes answer.
    fn form_timeout(&self) -> Duration;
    /// After `down` stopped the group's running nodes (RabbitMQ stops its epmd).
    fn after_stop(&self) {}
}

/// The three groups, and where their state lives.
#[derive(Debug)]
struct Cluster {
    dir: PathBuf,
    env_file: PathBuf,
    /// The single node's Cassandra, for its jars only (fetched once, shared).
    jars: Cassandra,
    rabbitmq: RabbitCluster,
    zookeeper: Ensemble,
    cassandra: Ring,
}

impl Cluster {
    /// The cluster of the state directory `state` (`<root>/.services`).
    fn new(state: &Path) -> Self {
        let dir = state.join(CLUSTER_DIR);
        Self {
            jars: Cassandra::new(state.join("cassandra")),
            rabbitmq: RabbitCluster::new(&dir),
            zookeeper: Ensemble::new(&dir),
            cassandra: Ring::new(&dir),
            env_file: state.join(ENV_FILE),
            dir,
        }
    }

    fn groups(&self) -> [&dyn Group; 3] {
        [&self.rabbitmq, &self.zookeeper, &self.cassandra]
    }

    /// Every node's name, group by group.
    fn node_names(&self) -> Vec<&'static str> {
        self.groups()
            .iter()
            .flat_map(|group| group.nodes().map(|node| node.name()))
            .collect()
    }

    /// The group of the node called `name`, and its index there.
    fn find(&self, name: &str) -> Result<(&dyn Group, usize)> {
        for group in self.groups() {
            if let Some(i) = group.nodes().iter().position(|node| node.name() == name) {
                return Ok((group, i));
            }
        }
        Err(format!(
            "there is no cluster node {name:?}; the nodes are {}",
            self.node_names().join(", ")
        )
        .into())
    }

    /// Takes the cluster's lock (a `services` command on the single nodes does not wait for it).
    fn lock(&self) -> Result<File> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        super::lock_file(&self.dir.join("lock"))
    }

    /// The variables `up --cluster` prints and writes to `cluster.env`.
    fn env_vars(&self) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = self
            .groups()
            .iter()
            .map(|group| {
                let all: Vec<String> = group.nodes().iter().map(|node| node.address()).collect();
                (group.list_var().to_owned(), all.join(","))
            })
            .collect();
        vars.push((NODES_VAR.to_owned(), self.node_names().join(",")));
        for group in self.groups() {
            for (i, node) in group.nodes().iter().enumerate() {
                let prefix = node_var_prefix(node.name());
                vars.extend(
                    group
                        .node_vars(i)
                        .into_iter()
                        .map(|(suffix, value)| (format!("{prefix}_{suffix}"), value)),
                );
            }
        }
        vars
    }

    /// Installs the packages `nodes` need, and Cassandra's jars if a ring node is among them.
    fn install(&self, nodes: &[&dyn Engine], state: &Path) -> Result<()> {
        let ring: Vec<&str> = self.cassandra.nodes().map(|node| node.name()).to_vec();
        let needs_jars = nodes.iter().any(|node| ring.contains(&node.name()));
        let mut packages: Vec<&str> = nodes
            .iter()
            .flat_map(|node| node.missing_packages())
            .collect();
        if needs_jars {
            packages.extend(self.jars.missing_packages());
        }
        packages.sort_unstable();
        packages.dedup();
        install::apt_install(&packages, &state.join("apt.log"))?;
        if needs_jars {
            self.jars.fetch()?;
            self.cassandra.link_jars(&self.jars.lib())?;
        }
        Ok(())
    }
}

/// `KERNEL_RABBIT_2` for `rabbit-2`: the prefix of a node's own variables.
fn node_var_prefix(name: &str) -> String {
    format!("KERNEL_{}", name.to_uppercase().replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_env_lists_every_node_and_names_each_one() {
        let cluster = Cluster::new(Path::new("/x/.services"));
        let vars = cluster.env_vars();
        let get = |name: &str| {
            vars.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no {name} in {vars:?}"))
        };
        assert_eq!(
            get("KERNEL_AMQP_URL"),
            "amqp://guest:guest@127.0.0.1:5692/%2f,amqp://guest:guest@127.0.0.1:5693/%2f,\
             amqp://guest:guest@127.0.0.1:5694/%2f"
        );
        assert_eq!(
            get("KERNEL_ZK_HOSTS"),
            "127.0.0.1:2291,127.0.0.1:2292,127.0.0.1:2293"
        );
        assert_eq!(
            get("KERNEL_CASSANDRA_HOSTS"),
            "127.0.0.1:29042,127.0.0.2:29042,127.0.0.3:29042"
        );
        assert_eq!(
            get(NODES_VAR),
            "rabbit-1,rabbit-2,rabbit-3,zk-1,zk-2,zk-3,cassandra-1,cassandra-2,cassandra-3"
        );
        assert_eq!(
            get("KERNEL_RABBIT_2_URL"),
            "amqp://guest:guest@127.0.0.1:5693/%2f"
        );
        assert_eq!(
            get("KERNEL_RABBIT_2_NODENAME"),
            "kernel-cluster-2@localhost"
        );
        assert_eq!(get("KERNEL_ZK_3_HOST"), "127.0.0.1:2293");
        assert_eq!(get("KERNEL_CASSANDRA_2_HOST"), "127.0.0.2:29042");
    }

    #[test]
    fn every_node_is_found_by_name_and_an_unknown_name_lists_them() {
        let cluster = Cluster::new(Path::new("/x/.services"));
        for name in cluster.node_names() {
            let (group, i) = cluster.find(name).unwrap();
            assert_eq!(group.nodes()[i].name(), name);
        }
        let Err(error) = cluster.find("rabbit-4") else {
            panic!("rabbit-4 found");
        };
        let error = error.to_string();
        assert!(error.contains("rabbit-1, rabbit-2"), "{error}");
    }

    #[test]
    fn cluster_ports_avoid_the_single_nodes_and_the_engines_defaults() {
        let cluster = Cluster::new(Path::new("/x/.services"));
        let single = [5682, 5683, 25682, 14369, 2191, 19042, 17000];
        let defaults = [5672, 5671, 25672, 4369, 2181, 2888, 3888, 9042, 7000, 7199];
        let mut seen = Vec::new();
        for group in cluster.groups() {
            for node in group.nodes() {
                for &port in node.ports() {
                    assert!(!single.contains(&port), "{} uses {port}", node.name());
                    assert!(!defaults.contains(&port), "{} uses {port}", node.name());
                    seen.push((node.host(), port));
                }
            }
        }
        let unique: std::collections::HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "two nodes bind the same address");
    }

    #[test]
    fn every_node_keeps_its_state_in_its_own_directory() {
        let cluster = Cluster::new(Path::new("/x/.services"));
        for group in cluster.groups() {
            for node in group.nodes() {
                let dir = node.dir().to_string_lossy().into_owned();
                assert_eq!(dir, format!("/x/.services/cluster/{}", node.name()));
                assert!(node.pid_file().starts_with(node.dir()));
                assert!(node.log_file().starts_with(node.dir()));
            }
        }
    }
}
