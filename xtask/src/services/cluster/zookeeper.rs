//! The ZooKeeper ensemble: three servers from Debian's `zookeeper` jars, as the single one runs.
//!
//! | server | id | client | quorum | election |
//! |---|---|---|---|---|
//! | `zk-1` | 1 | `127.0.0.1:2291` | `12891` | `13891` |
//! | `zk-2` | 2 | `127.0.0.1:2292` | `12892` | `13892` |
//! | `zk-3` | 3 | `127.0.0.1:2293` | `12893` | `13893` |
//!
//! Each `zoo.cfg` is the single server's plus `initLimit`, `syncLimit` and the three
//! `server.N=127.0.0.1:<quorum>:<election>` lines; `data/myid` holds the id. The servers elect a
//! leader by themselves. A server answers `srvr` with its mode only while it is part of a quorum,
//! so the ensemble is formed when every running server answers, one as `leader` and the others as
//! `follower`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use super::{Group, NODES};
use crate::Result;
use crate::services::engine::Engine;
use crate::services::zookeeper::{missing_packages, server_command, zoo_cfg};
use crate::services::{probe, process};

const NAMES: [&str; NODES] = ["zk-1", "zk-2", "zk-3"];
const CLIENT_PORTS: [u16; NODES] = [2291, 2292, 2293];
const QUORUM_PORTS: [u16; NODES] = [12891, 12892, 12893];
const ELECTION_PORTS: [u16; NODES] = [13891, 13892, 13893];
/// Each server's client, quorum and election ports.
const PORTS: [[u16; 3]; NODES] = [
    [2291, 12891, 13891],
    [2292, 12892, 13892],
    [2293, 12893, 13893],
];

/// One server of the ensemble.
#[derive(Debug)]
pub(super) struct ZkServer {
    index: usize,
    dir: PathBuf,
}

impl ZkServer {
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn config_file(&self) -> PathBuf {
        self.dir.join("zoo.cfg")
    }

    /// The server's id in `server.N` and `myid`.
    fn id(&self) -> usize {
        self.index + 1
    }
}

/// `zoo.cfg` of ensemble member `index` (0-based), its data in `data_dir`.
fn ensemble_cfg(data_dir: &Path, index: usize) -> String {
    let mut cfg = zoo_cfg(data_dir, CLIENT_PORTS[index]);
    cfg.push_str("initLimit=10\nsyncLimit=5\n");
    for i in 0..NODES {
        cfg.push_str(&format!(
            "server.{}={}:{}:{}\n",
            i + 1,
            probe::LOOPBACK,
            QUORUM_PORTS[i],
            ELECTION_PORTS[i]
        ));
    }
    cfg
}

impl Engine for ZkServer {
    fn name(&self) -> &'static str {
        NAMES[self.index]
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("zookeeper.pid")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("zookeeper.log")
    }

    fn address(&self) -> String {
        format!("{}:{}", probe::LOOPBACK, CLIENT_PORTS[self.index])
    }

    fn ports(&self) -> &'static [u16] {
        &PORTS[self.index]
    }

    fn missing_packages(&self) -> Vec<&'static str> {
        missing_packages()
    }

    fn start(&self) -> Result<Child> {
        let data = self.data_dir();
        fs::create_dir_all(&data)?;
        fs::write(data.join("myid"), format!("{}\n", self.id()))?;
        fs::write(self.config_file(), ensemble_cfg(&data, self.index))?;
        let mut command = server_command(&self.dir, &self.config_file(), ["-Xms32m", "-Xmx128m"])?;
        let child = process::spawn_detached(&mut command, &self.log_file())?;
        process::write_pid(&self.pid_file(), child.id())?;
        Ok(child)
    }

    fn probe(&self) -> Result<String> {
        probe::zookeeper(CLIENT_PORTS[self.index])
    }

    fn start_timeout(&self) -> Duration {
        Duration::from_secs(120)
    }

    fn stop(&self, pid: u32) -> Result<()> {
        process::terminate(pid, Duration::from_secs(10))
    }
}

/// The three servers.
#[derive(Debug)]
pub(super) struct Ensemble {
    servers: [ZkServer; NODES],
}

impl Ensemble {
    /// The servers whose state lives in `<cluster_dir>/zk-N`.
    pub(super) fn new(cluster_dir: &Path) -> Self {
        Self {
            servers: std::array::from_fn(|index| ZkServer {
                index,
                dir: cluster_dir.join(NAMES[index]),
            }),
        }
    }
}

impl Group for Ensemble {
    fn engine(&self) -> &'static str {
        "zookeeper"
    }

    fn nodes(&self) -> [&dyn Engine; NODES] {
        self.servers.each_ref().map(|server| server as &dyn Engine)
    }

    fn list_var(&self) -> &'static str {
        "KERNEL_ZK_HOSTS"
    }

    fn node_vars(&self, i: usize) -> Vec<(&'static str, String)> {
        vec![("HOST", self.servers[i].address())]
    }

    fn is_set_up(&self, i: usize) -> bool {
        self.servers[i].data_dir().join("myid").is_file()
    }

    fn prepare_fresh(&self) -> Result<()> {
        for server in &self.servers {
            let data = server.data_dir();
            if data.exists() {
                fs::remove_dir_all(&data)
                    .map_err(|e| format!("cannot remove {}: {e}", data.display()))?;
            }
        }
        Ok(())
    }

    fn check(&self, live: &[usize]) -> Result<String> {
        let modes: Vec<(usize, String)> = live
            .iter()
            .map(|&i| {
                probe::zookeeper_mode(CLIENT_PORTS[i])
                    .map(|mode| (i, mode))
                    .map_err(|e| format!("{}: {e}", NAMES[i]))
            })
            .collect::<Result<_, _>>()?;
        describe_ensemble(&modes)
    }

    fn form_timeout(&self) -> Duration {
        Duration::from_secs(60)
    }
}

/// `leader zk-2, followers zk-1, zk-3` from each running server's mode, or why that is not one
/// ensemble (no leader, two leaders, a standalone server).
fn describe_ensemble(modes: &[(usize, String)]) -> Result<String> {
    let with = |wanted: &str| -> Vec<&str> {
        modes
            .iter()
            .filter(|(_, mode)| mode == wanted)
            .map(|&(i, _)| NAMES[i])
            .collect()
    };
    let (leaders, followers) = (with("leader"), with("follower"));
    if leaders.len() == 1 && leaders.len() + followers.len() == modes.len() {
        Ok(format!(
            "leader {}, followers {}",
            leaders[0],
            followers.join(", ")
        ))
    } else {
        let seen: Vec<String> = modes
            .iter()
            .map(|(i, mode)| format!("{} {mode}", NAMES[*i]))
            .collect();
        Err(format!("not one leader and followers: {}", seen.join(", ")).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_has_its_client_port_and_names_all_three() {
        let cfg = ensemble_cfg(Path::new("/x/.services/cluster/zk-2/data"), 1);
        for line in [
            "dataDir=/x/.services/cluster/zk-2/data",
            "clientPort=2292",
            "clientPortAddress=127.0.0.1",
            "initLimit=10",
            "syncLimit=5",
            "server.1=127.0.0.1:12891:13891",
            "server.2=127.0.0.1:12892:13892",
            "server.3=127.0.0.1:12893:13893",
        ] {
            assert!(cfg.lines().any(|l| l == line), "missing {line:?} in\n{cfg}");
        }
    }

    #[test]
    fn an_ensemble_has_one_leader_and_followers_only() {
        let modes = |list: &[(usize, &str)]| -> Vec<(usize, String)> {
            list.iter().map(|&(i, m)| (i, m.to_owned())).collect()
        };
        assert_eq!(
            describe_ensemble(&modes(&[(0, "follower"), (1, "leader"), (2, "follower")])).unwrap(),
            "leader zk-2, followers zk-1, zk-3"
        );
        assert_eq!(
            describe_ensemble(&modes(&[(0, "leader"), (2, "follower")])).unwrap(),
            "leader zk-1, followers zk-3"
        );
        assert!(describe_ensemble(&modes(&[(0, "follower"), (1, "follower")])).is_err());
        assert!(describe_ensemble(&modes(&[(0, "leader"), (1, "leader")])).is_err());
        assert!(describe_ensemble(&modes(&[(0, "standalone")])).is_err());
    }
}
