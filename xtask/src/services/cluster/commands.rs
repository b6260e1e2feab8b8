//! What `services up --cluster`, `down`, `kill NODE`, `start NODE` and `status` do to the
//! cluster's nodes.

use std::fs;
use std::path::Path;
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use super::{Cluster, Group, NODES};
use crate::Result;
use crate::services::engine::{self, Engine, Launch};
use crate::services::process;

/// The indices of the group's nodes that run.
fn live_nodes(group: &dyn Group) -> Vec<usize> {
    (0..NODES)
        .filter(|&i| group.nodes()[i].running_pid().is_some())
        .collect()
}

/// Waits until [`Group::check`] passes for `live`, at most [`Group::form_timeout`].
fn wait_formed(group: &dyn Group, live: &[usize]) -> Result<String> {
    let deadline = Instant::now() + group.form_timeout();
    loop {
        match group.check(live) {
            Ok(seen) => return Ok(seen),
            Err(e) if Instant::now() >= deadline => {
                let logs: Vec<String> = live
                    .iter()
                    .map(|&i| group.nodes()[i].log_file().display().to_string())
                    .collect();
                return Err(format!(
                    "the {} nodes answer but are not one cluster after {:?}: {e}; read {}",
                    group.engine(),
                    group.form_timeout(),
                    logs.join(", ")
                )
                .into());
            }
            Err(_) => thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Spawns `node` with whatever state its directory holds.
fn spawn(node: &dyn Engine) -> Result<Child> {
    eprintln!(
        "services: starting {} (log: {})",
        node.name(),
        node.log_file().display()
    );
    node.start()
}

/// Makes every node of the three clusters run and form its cluster; returns the addresses.
pub(in crate::services) fn up(state: &Path) -> Result<Vec<(String, String)>> {
    let begun = Instant::now();
    let cluster = Cluster::new(state);
    let _lock = cluster.lock()?;
    // For each group: the nodes to start, and whether that is all of them (a fresh cluster).
    let plans: Vec<(&dyn Group, Vec<usize>)> = cluster
        .groups()
        .into_iter()
        .map(|group| {
            let live = live_nodes(group);
            (group, (0..NODES).filter(|i| !live.contains(i)).collect())
        })
        .collect();
    let stopped: Vec<&dyn Engine> = plans
        .iter()
        .flat_map(|(group, stopped)| stopped.iter().map(|&i| group.nodes()[i]))
        .collect();
    for &node in &stopped {
        engine::ensure_ports_free(node)?;
    }
    cluster.install(&stopped, state)?;
    for (group, stopped) in &plans {
        if stopped.len() == NODES {
            group.prepare_fresh()?;
        }
        if !stopped.is_empty() {
            group.before_start()?;
        }
    }
    let mut launches = Vec::new();
    for (group, stopped) in &plans {
        for (i, node) in group.nodes().into_iter().enumerate() {
            let child = if stopped.contains(&i) {
                Some(spawn(node)?)
            } else {
                None
            };
            launches.push(Launch::new(node, child));
        }
    }
    engine::wait_all(launches)?;
    for (group, stopped) in &plans {
        if stopped.len() == NODES {
            group.form()?;
        }
        let seen = wait_formed(*group, &[0, 1, 2])?;
        eprintln!("services: {} cluster: {seen}", group.engine());
    }
    let vars = cluster.env_vars();
    let lines: String = vars
        .iter()
        .map(|(name, value)| format!("{name}={value}\n"))
        .collect();
    fs::write(&cluster.env_file, lines)
        .map_err(|e| format!("cannot write {}: {e}", cluster.env_file.display()))?;
    eprintln!("services: cluster ready in {:.1?}", begun.elapsed());
    Ok(vars)
}

/// Stops every node of the cluster that runs, all at once; a no-op when none does.
pub(in crate::services) fn down(state: &Path) -> Result<()> {
    let cluster = Cluster::new(state);
    if !cluster.dir.exists() {
        return Ok(());
    }
    let _lock = cluster.lock()?;
    let running: Vec<(&dyn Group, &dyn Engine, u32)> = cluster
        .groups()
        .into_iter()
        .flat_map(|group| {
            group
                .nodes()
                .into_iter()
                .filter_map(move |node| node.running_pid().map(|pid| (group, node, pid)))
        })
        .collect();
    let _ = fs::remove_file(&cluster.env_file);
    if running.is_empty() {
        eprintln!("services: no cluster node is running");
        return Ok(());
    }
    let begun = Instant::now();
    let pids: Vec<u32> = running.iter().map(|&(_, _, pid)| pid).collect();
    // SIGTERM: RabbitMQ, ZooKeeper and Cassandra all shut down cleanly on it (Cassandra
    // drains), and the state is wiped by the next fresh start anyway.
    process::terminate_all(&pids, Duration::from_secs(60))?;
    for &(_, node, _) in &running {
        let _ = fs::remove_file(node.pid_file());
    }
    for group in cluster.groups() {
        if running.iter().any(|(g, _, _)| g.engine() == group.engine()) {
            group.after_stop();
        }
    }
    let names: Vec<&str> = running.iter().map(|(_, node, _)| node.name()).collect();
    eprintln!(
        "services: stopped {} in {:.1?}",
        names.join(", "),
        begun.elapsed()
    );
    Ok(())
}

/// Kills the node `name` with SIGKILL, as a crash would; a no-op if it is not running.
pub(in crate::services) fn kill(state: &Path, name: &str) -> Result<()> {
    let cluster = Cluster::new(state);
    let (group, i) = cluster.find(name)?;
    let _lock = cluster.lock()?;
    let node = group.nodes()[i];
    match node.running_pid() {
        None => eprintln!("services: {name} is not running"),
        Some(pid) => {
            process::kill(pid).map_err(|e| format!("cannot kill {name}: {e}"))?;
            let _ = fs::remove_file(node.pid_file());
            eprintln!("services: killed {name} (pid {pid}) with SIGKILL");
        }
    }
    Ok(())
}

/// Starts the node `name` again with the state it had, and waits until it is back in its
/// cluster; a no-op if it runs.
pub(in crate::services) fn start(state: &Path, name: &str) -> Result<()> {
    let begun = Instant::now();
    let cluster = Cluster::new(state);
    let (group, i) = cluster.find(name)?;
    let _lock = cluster.lock()?;
    let node = group.nodes()[i];
    if let Some(pid) = node.running_pid() {
        eprintln!("services: {name} already running (pid {pid})");
        return Ok(());
    }
    if !group.is_set_up(i) {
        return Err(format!(
            "{name} has no state to start from: start the cluster with \
             `cargo xtask services up --cluster`"
        )
        .into());
    }
    if live_nodes(group).is_empty() {
        return Err(format!(
            "no other {} node is running, so {name} has no cluster to rejoin: \
             `cargo xtask services up --cluster` starts the whole cluster",
            group.engine()
        )
        .into());
    }
    engine::ensure_ports_free(node)?;
    group.before_start()?;
    let child = spawn(node)?;
    engine::wait_all(vec![Launch::new(node, Some(child))])?;
    let seen = wait_formed(group, &live_nodes(group))?;
    eprintln!(
        "services: {name} is back in its cluster after {:.1?}: {seen}",
        begun.elapsed()
    );
    Ok(())
}

/// Prints one line per node (running: pid, memory, address, what it answers) and one per
/// cluster; nothing if the cluster was never started here.
pub(in crate::services) fn status(state: &Path) {
    let cluster = Cluster::new(state);
    if !cluster.dir.exists() {
        return;
    }
    for group in cluster.groups() {
        for node in group.nodes() {
            let name = node.name();
            match node.running_pid() {
                Some(pid) => {
                    let rss = process::rss_mib(pid).unwrap_or_default();
                    let answer = node
                        .probe()
                        .unwrap_or_else(|e| format!("not answering: {e}"));
                    println!(
                        "{name:<12} running  pid {pid:<8} {rss:>5} MiB  {:<36} {answer}",
                        node.address()
                    );
                }
                None => println!("{name:<12} stopped"),
            }
        }
        let live = live_nodes(group);
        if !live.is_empty() {
            let engine = group.engine();
            match group.check(&live) {
                Ok(seen) => println!("{engine:<12} cluster  {seen}"),
                Err(e) => println!("{engine:<12} cluster  not formed: {e}"),
            }
        }
    }
}
