//! [`Namespace`] and [`LockId`]: validated names, so that no backend has to escape anything.

use std::fmt;

use crate::SyncError;

/// Longest accepted [`LockId`], in bytes.
pub const MAX_ID_LEN: usize = 200;

/// Longest accepted [`Namespace`], in bytes.
pub const MAX_NAMESPACE_LEN: usize = 100;

/// The service a backend keeps its locks under, as H2 did: `com.example.billing`.
///
/// Two services may use the same lock id without meeting; two instances of one service with
/// the same id exclude each other. ZooKeeper lock paths are `/<namespace>/<id>`, Cassandra
/// rows are keyed `<namespace>/<id>`.
///
/// Rules: 1 to [`MAX_NAMESPACE_LEN`] bytes of ASCII letters, digits, `.`, `-` and `_`, not
/// starting with `.`, and not one of ZooKeeper's reserved top-level names (`zookeeper`) or the
/// leader-election root (`sync`).
///
/// ```
/// use kernel_sync::Namespace;
/// assert_eq!(Namespace::new("com.example.billing").unwrap().as_str(), "com.example.billing");
/// assert!(Namespace::new("com/example").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(String);

impl Namespace {
    /// Validates `namespace`.
    ///
    /// # Errors
    /// [`SyncError::InvalidNamespace`] naming the broken rule.
    pub fn new(namespace: impl Into<String>) -> Result<Self, SyncError> {
        let namespace = namespace.into();
        let reject = |reason| {
            Err(SyncError::InvalidNamespace {
                namespace: namespace.clone(),
                reason,
            })
        };
        if namespace.is_empty() {
            return reject("empty");
        }
        if namespace.len() > MAX_NAMESPACE_LEN {
            return reject("longer than 100 bytes");
        }
        if !namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return reject("only ASCII letters, digits, '.', '-' and '_' are allowed");
        }
        if namespace.starts_with('.') {
            return reject("starts with '.'");
        }
        if namespace == "zookeeper" || namespace == "sync" {
            return reject("reserved name");
        }
        Ok(Namespace(namespace))
    }

    /// The namespace as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a lock or of a leadership, within a [`Namespace`]: `billing/nightly-close`.
///
/// Rules: 1 to [`MAX_ID_LEN`] bytes of ASCII letters, digits, `-`, `_`, `.`, `:` and `/`;
/// `/` separates segments, and no segment is empty, `.` or `..`. A ZooKeeper backend stores the
/// id as one path component with every `/` replaced by `#`, as H2 did (`some/id` is the node
/// `/<namespace>/some#id`); `#` itself is not allowed, so two ids never share a node. H2
/// escaped only `/`; we refuse what we would otherwise have to escape.
///
/// ```
/// use kernel_sync::{LockId, SyncError};
/// let id = LockId::new("billing/nightly-close")?;
/// assert_eq!(id.as_str(), "billing/nightly-close");
/// assert!(matches!(LockId::new("/billing"), Err(SyncError::InvalidId { .. })));
/// assert!(matches!(LockId::new("a b"), Err(SyncError::InvalidId { .. })));
/// # Ok::<(), SyncError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockId(String);

impl LockId {
    /// Validates `id`.
    ///
    /// # Errors
    /// [`SyncError::InvalidId`] naming the broken rule.
    pub fn new(id: impl Into<String>) -> Result<Self, SyncError> {
        let id = id.into();
        let reject = |reason| {
            Err(SyncError::InvalidId {
                id: id.clone(),
                reason,
            })
        };
        if id.is_empty() {
            return reject("empty");
        }
        if id.len() > MAX_ID_LEN {
            return reject("longer than 200 bytes");
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/'))
        {
            return reject("only ASCII letters, digits, '-', '_', '.', ':' and '/' are allowed");
        }
        if id.split('/').any(str::is_empty) {
            return reject("empty segment (leading, trailing or doubled '/')");
        }
        if id
            .split('/')
            .any(|segment| segment == "." || segment == "..")
        {
            return reject("'.' and '..' are not segments");
        }
        Ok(LockId(id))
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as one ZooKeeper path component: every `/` replaced by `#`.
    #[cfg_attr(not(feature = "zookeeper"), allow(dead_code))]
    pub(crate) fn path_component(&self) -> String {
        self.0.replace('/', "#")
    }
}

impl fmt::Display for LockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: Result<LockId, SyncError>) -> &'static str {
        match result {
            Err(SyncError::InvalidId { reason, .. }) => reason,
            other => panic!("expected an invalid id, got {other:?}"),
        }
    }

    #[test]
    fn ids_with_slashes_become_one_path_component() {
        let id = LockId::new("some/id").unwrap();
        assert_eq!(id.path_component(), "some#id");
    }

    #[test]
    fn malformed_ids_are_rejected_with_the_broken_rule() {
        assert_eq!(reason(LockId::new("")), "empty");
        assert_eq!(
            reason(LockId::new("x".repeat(MAX_ID_LEN + 1))),
            "longer than 200 bytes"
        );
        for bad in ["/a", "a/", "a//b"] {
            assert!(
                reason(LockId::new(bad)).starts_with("empty segment"),
                "{bad}"
            );
        }
        for bad in ["a#b", "a b", "ä", "a\nb", "a\0b"] {
            assert!(reason(LockId::new(bad)).starts_with("only ASCII"), "{bad}");
        }
        for bad in [".", "..", "a/../b"] {
            assert!(reason(LockId::new(bad)).contains("'..'"), "{bad}");
        }
    }

    #[test]
    fn usual_ids_are_accepted() {
        for good in [
            "billing",
            "billing/nightly-close",
            "com.example:job_7",
            "a.b",
            "..a",
        ] {
            assert_eq!(LockId::new(good).unwrap().as_str(), good);
        }
        assert!(LockId::new("x".repeat(MAX_ID_LEN)).is_ok());
    }

    #[test]
    fn namespaces_follow_service_name_rules() {
        assert!(Namespace::new("com.example.billing").is_ok());
        assert!(Namespace::new("billing-v2_eu").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "zookeeper", "sync"] {
            assert!(
                matches!(Namespace::new(bad), Err(SyncError::InvalidNamespace { .. })),
                "{bad}"
            );
        }
    }
}
