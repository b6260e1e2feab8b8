//! What every engine offers to `up`, `down` and `status`, and the loops shared by all of them.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use super::{probe, process};
use crate::Result;

/// One engine managed by `cargo xtask services`: how to install, start, probe and stop it.
///
/// Implemented by [`RabbitMq`](super::rabbitmq::RabbitMq),
/// [`ZooKeeper`](super::zookeeper::ZooKeeper) and [`Cassandra`](super::cassandra::Cassandra).
pub(super) trait Engine {
    /// Short name for messages: `rabbitmq`, `zookeeper`, `cassandra`.
    fn name(&self) -> &'static str;
    /// The engine's private state directory, `<root>/.services/<name>`. Its path appears in the
    /// engine's command line, which is how a pid is recognised as ours.
    fn dir(&self) -> &Path;
    /// Where the pid of our running instance is recorded.
    fn pid_file(&self) -> PathBuf;
    /// The log to read when the engine fails.
    fn log_file(&self) -> PathBuf;
    /// The address the tests are given (`host:port` or a URL).
    fn address(&self) -> String;
    /// The loopback address the engine binds: 127.0.0.1, except for the Cassandra ring's
    /// nodes 2 and 3 (127.0.0.2, 127.0.0.3).
    fn host(&self) -> Ipv4Addr {
        probe::LOOPBACK
    }
    /// Every TCP port the engine binds on [`host`](Engine::host); none may be taken when it
    /// starts.
    fn ports(&self) -> &'static [u16];
    /// Fails if a port the engine shares with its own kind (RabbitMQ's epmd) is held by
    /// something else.
    fn check_shared_ports(&self) -> Result<()> {
        Ok(())
    }
    /// Debian packages the engine needs that are not installed yet.
    fn missing_packages(&self) -> Vec<&'static str>;
    /// Downloads what apt does not provide; a no-op when it is already there.
    fn fetch(&self) -> Result<()> {
        Ok(())
    }
    /// Wipes the previous run's state, writes the configuration and spawns the engine detached.
    fn start(&self) -> Result<Child>;
    /// One readiness attempt by a real protocol exchange; returns what the engine said (version).
    fn probe(&self) -> Result<String>;
    /// Why our running instance no longer matches what `start` would set up now (say, a config
    /// an older xtask wrote), if it does not; `up` then restarts it.
    fn outdated(&self) -> Option<String> {
        None
    }
    /// A last check after the first successful probe of a fresh start.
    fn settle(&self) -> Result<()> {
        Ok(())
    }
    /// How long a fresh start may take on a busy 2-core CI machine.
    fn start_timeout(&self) -> Duration;
    /// Stops our instance running as `pid` and waits until it has exited.
    fn stop(&self, pid: u32) -> Result<()>;

    /// The pid of our instance, if one is running.
    fn running_pid(&self) -> Option<u32> {
        process::live_pid(&self.pid_file(), self.dir())
    }
}

/// The first of the engine's ports on which something accepts connections.
pub(super) fn taken_port(engine: &dyn Engine) -> Option<u16> {
    engine
        .ports()
        .iter()
        .copied()
        .find(|&port| probe::port_is_open_at(engine.host(), port))
}

/// Fails if a port the engine needs is already served by a process that is not our engine.
pub(super) fn ensure_ports_free(engine: &dyn Engine) -> Result<()> {
    let Some(port) = taken_port(engine) else {
        return engine.check_shared_ports();
    };
    Err(format!(
        "{name}: port {host}:{port} is taken by a process that is not our {name} (no live pid \
         in {pid_file}); `ss -ltnp 'sport = :{port}'` names it. Stop it, or if it is a leftover \
         of an earlier `services up` whose state was deleted, kill it by hand",
        name = engine.name(),
        host = engine.host(),
        pid_file = engine.pid_file().display(),
    )
    .into())
}

/// An engine `up` waits for: one it just spawned, or one an earlier `up` left running.
pub(super) struct Launch<'a> {
    engine: &'a dyn Engine,
    /// The process this `up` spawned; `None` for an instance started earlier.
    child: Option<Child>,
    since: Instant,
    deadline: Instant,
}

impl<'a> Launch<'a> {
    /// Waits for `engine`; `child` is set if this `up` just spawned it.
    pub(super) fn new(engine: &'a dyn Engine, child: Option<Child>) -> Self {
        let since = Instant::now();
        Self {
            engine,
            child,
            since,
            deadline: since + engine.start_timeout(),
        }
    }

    /// One readiness check: `Some(what the engine said)` once ready, `None` while it is still
    /// starting, an error naming the log once it has exited or run out of time.
    fn check(&mut self) -> Result<Option<String>> {
        let engine = self.engine;
        let last_error = match engine.probe() {
            Ok(detail) => return Ok(Some(detail)),
            Err(e) => e,
        };
        let log = engine.log_file();
        if let Some(exit) = self.exit()? {
            let tail = process::tail(&log, 30);
            return Err(format!(
                "{} {exit} before it was ready (last probe: {last_error}); read {}:\n{tail}",
                engine.name(),
                log.display(),
            )
            .into());
        }
        if Instant::now() >= self.deadline {
            return Err(format!(
                "{} not ready after {:?} (last probe: {last_error}); read {}",
                engine.name(),
                engine.start_timeout(),
                log.display(),
            )
            .into());
        }
        Ok(None)
    }

    /// How the engine's process ended, if it did.
    fn exit(&mut self) -> Result<Option<String>> {
        Ok(match &mut self.child {
            Some(child) => child.try_wait()?.map(|status| format!("exited ({status})")),
            None => self
                .engine
                .running_pid()
                .is_none()
                .then(|| "stopped".to_owned()),
        })
    }

    /// Finishes a ready engine (settle after a fresh start) and says so on stderr.
    fn report(&self, detail: &str) -> Result<()> {
        let (engine, name, address) = (self.engine, self.engine.name(), self.engine.address());
        if self.child.is_none() {
            let pid = engine
                .running_pid()
                .map_or_else(|| "?".to_owned(), |pid| pid.to_string());
            eprintln!("services: {name} already running (pid {pid}): {detail} at {address}");
            return Ok(());
        }
        engine
            .settle()
            .map_err(|e| format!("{name}: {e}; read {}", engine.log_file().display()))?;
        eprintln!(
            "services: {name} ready in {:.1?}: {detail} at {address}",
            self.since.elapsed()
        );
        Ok(())
    }
}

/// Polls every engine in turn until all are ready; fails on the first that dies or times out
/// (the others keep running, and the next `up` reuses them).
pub(super) fn wait_all(mut pending: Vec<Launch<'_>>) -> Result<()> {
    while !pending.is_empty() {
        let mut still_starting = Vec::with_capacity(pending.len());
        for mut launch in pending {
            match launch.check()? {
                Some(detail) => launch.report(&detail)?,
                None => still_starting.push(launch),
            }
        }
        pending = still_starting;
        if !pending.is_empty() {
            thread::sleep(process::POLL);
        }
    }
    Ok(())
}
