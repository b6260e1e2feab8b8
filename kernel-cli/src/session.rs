//! The saved session: `kernel login` writes it, later commands send it, `kernel logout`
//! removes it.
//!
//! It lives in `$KERNEL_CLI_CONFIG_DIR/session`, else `$XDG_CONFIG_HOME/kernel/session`, else
//! `~/.config/kernel/session`, created with mode 0600 (the session id is a secret).

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::failure::Failure;

/// What `kernel login` keeps.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Saved {
    /// The session id sent with calls.
    pub(crate) session_id: String,
    /// Who signed in: the user name given to `login`.
    pub(crate) user: String,
    /// The user's id at the login service.
    #[serde(default)]
    pub(crate) user_id: String,
    /// The user's roles when signing in.
    #[serde(default)]
    pub(crate) roles: Vec<String>,
    /// The login service that issued it (where `logout` goes).
    pub(crate) login_service: String,
}

/// The directory the session file is kept in.
pub(crate) fn dir() -> Result<PathBuf, Failure> {
    if let Some(dir) = std::env::var_os("KERNEL_CLI_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("kernel"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config").join("kernel")),
        None => Err(Failure::usage(
            "no config directory: set KERNEL_CLI_CONFIG_DIR, XDG_CONFIG_HOME or HOME",
        )),
    }
}

fn file() -> Result<PathBuf, Failure> {
    Ok(dir()?.join("session"))
}

/// The saved session, if there is one.
pub(crate) fn load() -> Result<Option<Saved>, Failure> {
    let path = file()?;
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Failure::usage(format!(
                "{} is not a saved session ({e}); run `kernel logout`",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Failure::other(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Writes `saved`, readable by the user alone (0600), replacing any earlier session.
pub(crate) fn save(saved: &Saved) -> Result<PathBuf, Failure> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    let path = file()?;
    let cannot =
        |e: std::io::Error| Failure::other(format!("cannot write {}: {e}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(cannot)?;
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(cannot)?;
    // An existing file keeps its mode through `open`: tighten it.
    out.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(cannot)?;
    let json = serde_json::to_vec_pretty(saved).map_err(Failure::other)?;
    out.write_all(&json).map_err(cannot)?;
    Ok(path)
}

/// Removes the saved session; `false` if there was none.
pub(crate) fn remove() -> Result<bool, Failure> {
    let path = file()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Failure::other(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}
