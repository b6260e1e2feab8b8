//! Reloading what can change while a process runs, when the configuration file changes: the
//! breaker options and the service-to-service rules.

use std::path::Path;
use std::time::{Duration, SystemTime};

use kernel_client::{Client, WeakClient};

use crate::Config;

/// How often the configuration file is looked at.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Watches the configuration file while `client` (or any clone of it) lives: when the file's
/// modification time or length changes, the layers are read again and, if they are valid,
/// the new breaker options are put in force in `client` (breakers whose options did not change
/// keep their state) and the new service-to-service rules in `auth`, if given. An invalid file
/// is logged and ignored: the running settings stay. Everything else is read at start.
pub(crate) fn watch(client: WeakClient, auth: Option<kernel_auth::Auth>) {
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
                Ok(config) => apply(&config, &client, auth.as_ref(), &file),
                Err(error) => {
                    tracing::warn!(file = %file.display(), %error, "configuration not reloaded: keeping the running settings");
                }
            }
        }
    });
}

/// Puts what reloads of `config` in force, logging what changed.
fn apply(config: &Config, client: &Client, auth: Option<&kernel_auth::Auth>, file: &Path) {
    let settings = config.client.breaker_settings();
    if settings != client.breaker_settings() {
        match client.set_breaker_settings(settings) {
            Ok(()) => {
                tracing::info!(file = %file.display(), "configuration reloaded: breaker options")
            }
            Err(error) => tracing::warn!(%error, "reloaded breaker options refused"),
        }
    }
    if let Some(auth) = auth {
        let rules = config.auth.service_rules();
        if *auth.rules() != rules {
            auth.set_rules(rules);
            tracing::info!(file = %file.display(), "configuration reloaded: service-to-service rules");
        }
    }
}

/// What tells a changed file: its modification time and length (`None` if it is absent).
fn stamp(file: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(file).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}
