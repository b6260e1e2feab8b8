//! Which checkout `cargo xtask` works on: found at run time, from the current directory.
//!
//! The root is never compiled in. Two checkouts that share one `CARGO_TARGET_DIR` share one
//! `xtask` binary, and a compiled-in root made each run the other's codegen, or start and stop
//! the other's engines.

use std::path::{Path, PathBuf};

use crate::Result;

/// The workspace root of the checkout the command runs in: the nearest directory, from the
/// current one up, whose `Cargo.toml` is a workspace manifest. `cargo xtask` keeps the caller's
/// current directory, so this is the checkout it was typed in, from any of its subdirectories.
pub(crate) fn root() -> Result<PathBuf> {
    let current =
        std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?;
    find_root(&current).ok_or_else(|| {
        format!(
            "no Cargo.toml with a [workspace] table in {} or above: run `cargo xtask` inside \
             the kernel checkout",
            current.display()
        )
        .into()
    })
}

/// Where cargo builds for the checkout at `root`: `CARGO_TARGET_DIR` if set (relative to
/// `root`, where xtask runs cargo), else `<root>/target`.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| root.join(dir))
        .unwrap_or_else(|| root.join("target"))
}

/// The nearest of `start` and its ancestors that holds a workspace manifest.
fn find_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| is_workspace_manifest(&dir.join("Cargo.toml")))
        .map(Path::to_path_buf)
}

/// Whether `manifest` exists and has a `[workspace]` (or `[workspace.…]`) table, which only a
/// workspace root's manifest may have.
fn is_workspace_manifest(manifest: &Path) -> bool {
    std::fs::read_to_string(manifest).is_ok_and(|text| {
        text.lines().any(|line| {
            let line = line.trim_start();
            line.starts_with("[workspace]") || line.starts_with("[workspace.")
        })
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn root_is_the_nearest_workspace_manifest_above_a_member_directory() {
        let tmp = std::env::temp_dir().join(format!("xtask-root-test-{}", std::process::id()));
        let checkout = tmp.join("checkout");
        let member_src = checkout.join("kernel-sync").join("src");
        fs::create_dir_all(&member_src).unwrap();
        fs::write(
            checkout.join("Cargo.toml"),
            "[workspace]\nmembers = [\"kernel-sync\"]\n",
        )
        .unwrap();
        fs::write(
            checkout.join("kernel-sync").join("Cargo.toml"),
            "[package]\nname = \"kernel-sync\"\n\n[lints]\nworkspace = true\n",
        )
        .unwrap();

        assert_eq!(find_root(&member_src), Some(checkout.clone()));
        assert_eq!(
            find_root(&checkout.join("kernel-sync")),
            Some(checkout.clone())
        );
        assert_eq!(find_root(&checkout), Some(checkout.clone()));
        fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn a_package_manifest_is_not_a_root() {
        let tmp = std::env::temp_dir().join(format!("xtask-noroot-test-{}", std::process::id()));
        let package = tmp.join("lonely");
        fs::create_dir_all(&package).unwrap();
        fs::write(package.join("Cargo.toml"), "[package]\nname = \"lonely\"\n").unwrap();

        // The search goes past the package's manifest, to whatever holds the temp directory
        // (usually nothing).
        assert_eq!(find_root(&package), find_root(&tmp));
        assert_ne!(find_root(&package), Some(package.clone()));
        fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn this_checkout_is_found_from_the_xtask_directory() {
        // `cargo test` runs this in xtask/, whose parent is the workspace root.
        let xtask = std::env::current_dir().unwrap();
        assert_eq!(root().unwrap().as_path(), xtask.parent().unwrap());
    }
}
