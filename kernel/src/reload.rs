//! Reloading what can change while a process runs: the breaker options, when the
//! configuration file changes.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use kernel_client::WeakClient;

use crate::Config;

/// How often the configuration file is looked at.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Watches the configuration file while `client` (or any clone of it) lives: when the file's
/// modification time or length changes, the layers are read again and, if they are valid,
/// the new breaker options are put in force (breakers whose options did not change keep
/// their state). An invalid file is logged and ignored: the running settings stay.
///
/// Only the breaker options reload (`[client.breaker]`) here, and the service-to-service rules
/// ([`watch_rules`]); everything else is read at start.
pub(crate) fn watch(client: WeakClient) {
    let file = Config::file();
    tokio::spawn(async move {
        let mut seen = stamp(&file);
        let mut interval = tokio::time::interval(RELOAD_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Some(client) = client.upgrade() else {
                return;
            };
            let now = stamp(&file);
            if now == seen {
                continue;
            }
            seen = now;
            match Config::load() {
                Ok(config) => {
                    let settings = config.client.breaker_settings();
                    if settings != client.breaker_settings() {
                        match client.set_breaker_settings(settings) {
                            Ok(()) => {
                                tracing::info!(file = %file.display(), "configuration reloaded: breaker options")
                            }
                            Err(error) => {
                                tracing::warn!(%error, "reloaded breaker options refused")
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(file = %file.display(), %error, "configuration not reloaded: keeping the running settings");
                }
            }
        }
    });
}

/// What tells a changed file: its modification time and length (`None` if it is absent).
fn stamp(file: &PathBuf) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(file).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// Watches the configuration file while `client` lives, putting new service-to-service rules
/// (`[auth] rules`) in force in `auth` when it changes and is valid.
pub(crate) fn watch_rules(client: WeakClient, auth: kernel_auth::Auth) {
    let file = Config::file();
    tokio::spawn(async move {
        let mut seen = stamp(&file);
        let mut interval = tokio::time::interval(RELOAD_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if client.upgrade().is_none() {
                return;
            }
            let now = stamp(&file);
            if now == seen {
                continue;
            }
            seen = now;
            match Config::load() {
                Ok(config) => {
                    let rules = config.auth.service_rules();
                    if *auth.rules() != rules {
                        auth.set_rules(rules);
                        tracing::info!(file = %file.display(), "configuration reloaded: service-to-service rules");
                    }
                }
                Err(error) => {
                    tracing::warn!(file = %file.display(), %error, "configuration not reloaded: keeping the running rules");
                }
            }
        }
    });
}
