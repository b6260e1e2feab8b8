//! One private RabbitMQ node: its Erlang node name, state directory and Erlang ports, and the
//! environment that points `rabbitmq-server` and `rabbitmqctl` at it and nothing else.
//!
//! The single test node ([`RabbitMq`](super::RabbitMq)) and each node of the test cluster
//! (`services up --cluster`) are one of these, with their own directory and ports.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use super::users;
use crate::Result;
use crate::services::{probe, process};

/// The real server script (not Debian's `/usr/sbin` wrapper, which switches user).
pub(in crate::services) const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

/// A private node: where it lives and how Erlang reaches it.
#[derive(Debug, Clone)]
pub(in crate::services) struct Node {
    dir: PathBuf,
    name: &'static str,
    dist_port: u16,
    epmd_port: u16,
}

impl Node {
    /// The node `name` (`kernel-test@localhost`) whose state lives in `dir`, with its Erlang
    /// distribution on `127.0.0.1:dist_port`, registered with the epmd on `epmd_port`.
    pub(in crate::services) fn new(
        dir: PathBuf,
        name: &'static str,
        dist_port: u16,
        epmd_port: u16,
    ) -> Self {
        Self {
            dir,
            name,
            dist_port,
            epmd_port,
        }
    }

    /// The state directory (also `HOME`, where the Erlang cookie lives).
    pub(in crate::services) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pid file RabbitMQ writes once the Erlang VM runs (the VM's pid).
    pub(in crate::services) fn pid_file(&self) -> PathBuf {
        self.dir.join("rabbitmq.pid")
    }

    /// The console output of the server.
    pub(in crate::services) fn log_file(&self) -> PathBuf {
        self.dir.join("rabbitmq.log")
    }

    /// `rabbitmq.conf`.
    pub(in crate::services) fn config_file(&self) -> PathBuf {
        self.dir.join("rabbitmq.conf")
    }

    /// The environment that points the server and the CLI tools at this node only.
    pub(in crate::services) fn env(&self) -> Vec<(&'static str, String)> {
        let at = |name: &str| self.dir.join(name).to_string_lossy().into_owned();
        vec![
            ("HOME", at("")),
            ("RABBITMQ_NODENAME", self.name.to_owned()),
            ("RABBITMQ_DIST_PORT", self.dist_port.to_string()),
            ("ERL_EPMD_PORT", self.epmd_port.to_string()),
            ("ERL_EPMD_ADDRESS", probe::LOOPBACK.to_string()),
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}".to_owned(),
            ),
            ("RABBITMQ_CONFIG_FILE", at("rabbitmq.conf")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE", at("advanced.config")),
            ("RABBITMQ_CONF_ENV_FILE", at("rabbitmq-env.conf")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", at("enabled_plugins")),
            ("RABBITMQ_MNESIA_BASE", at("mnesia")),
            ("RABBITMQ_LOG_BASE", at("log")),
            (
                "RABBITMQ_PID_FILE",
                self.pid_file().to_string_lossy().into_owned(),
            ),
        ]
    }

    /// A command with this node's environment and none of the caller's `RABBITMQ_*`/`ERL_*`.
    pub(in crate::services) fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("RABBITMQ_") || name.starts_with("ERL_") {
                command.env_remove(&*name);
            }
        }
        command.envs(self.env()).current_dir(&self.dir);
        command
    }

    /// Runs `rabbitmqctl -n <node> <args>`; fails with its output (passwords redacted).
    pub(in crate::services) fn ctl(&self, args: &[&str]) -> Result<()> {
        let (succeeded, output) = self.ctl_output(args)?;
        if succeeded {
            return Ok(());
        }
        let what = users::redact(args).join(" ");
        Err(format!("rabbitmqctl -n {} {what} failed: {output}", self.name).into())
    }

    /// `rabbitmqctl -n <node> <args>`, ready to run.
    pub(in crate::services) fn ctl_command(&self, args: &[&str]) -> Command {
        let mut command = self.command(CTL);
        command.args(["-n", self.name]).args(args);
        command
    }

    /// Runs `rabbitmqctl -n <node> <args>`; whether it succeeded, and what it printed.
    pub(in crate::services) fn ctl_output(&self, args: &[&str]) -> Result<(bool, String)> {
        let output = self.ctl_command(args).output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok((output.status.success(), text))
    }

    /// Removes the previous run's mnesia, logs and pid file: the next start is a new node.
    pub(in crate::services) fn wipe(&self) -> Result<()> {
        for stale in ["mnesia", "log"] {
            let path = self.dir.join(stale);
            if path.exists() {
                fs::remove_dir_all(&path)
                    .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
            }
        }
        let _ = fs::remove_file(self.pid_file());
        Ok(())
    }

    /// Writes `rabbitmq.conf` (the given text), an empty plugin list and an empty env file.
    pub(in crate::services) fn write_config(&self, config: &str) -> Result<()> {
        fs::create_dir_all(self.dir.join("log"))?;
        fs::write(self.config_file(), config)?;
        fs::write(self.dir.join("enabled_plugins"), "[].\n")?;
        fs::write(
            self.dir.join("rabbitmq-env.conf"),
            "# empty: everything is set by xtask\n",
        )?;
        Ok(())
    }

    /// Spawns the server detached, with whatever state the directory holds.
    ///
    /// The script writes the pid file with the Erlang VM's pid once it boots; the child here is
    /// the script, which lives exactly as long as the VM.
    pub(in crate::services) fn spawn(&self) -> Result<Child> {
        process::spawn_detached(&mut self.command(SERVER), &self.log_file())
    }

    /// Fails if the epmd port is held by something that is not an epmd. Our private epmd
    /// outlives a node that crashed, and is fine to reuse; anything else there fails the node's
    /// boot ("nodistribution"), but only after about 25 s.
    pub(in crate::services) fn check_epmd(&self) -> Result<()> {
        let port = self.epmd_port;
        if !probe::port_is_open(port) {
            return Ok(());
        }
        probe::epmd(port).map_err(|e| {
            format!(
                "rabbitmq: port {port} (our private epmd) is held by something that is not an \
                 epmd ({e}); `ss -ltnp 'sport = :{port}'` names it"
            )
            .into()
        })
    }

    /// Stops our private epmd (it outlives the nodes); harmless if it is already gone.
    pub(in crate::services) fn stop_epmd(&self) {
        let _ = self.command("epmd").arg("-kill").output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_location_is_inside_the_state_dir() {
        let node = Node::new(PathBuf::from("/x/.services/rabbitmq"), "n@localhost", 1, 2);
        for (name, value) in node.env() {
            if name.ends_with("_FILE") || name.ends_with("_BASE") || name == "HOME" {
                assert!(value.starts_with("/x/.services/rabbitmq"), "{name}={value}");
            }
        }
        let env = node.env();
        assert!(env.contains(&("RABBITMQ_NODENAME", "n@localhost".to_owned())));
        assert!(env.contains(&("RABBITMQ_DIST_PORT", "1".to_owned())));
        assert!(env.contains(&("ERL_EPMD_PORT", "2".to_owned())));
    }
}
