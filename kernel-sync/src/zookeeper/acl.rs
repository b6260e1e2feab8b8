//! Who may do what to the nodes the backend creates: open ACLs without credentials; with
//! digest credentials, the creator's identity (and its peers) alone may create and delete
//! under the lock and election paths, and anyone may read. See [`docs/sync.md`](https://github.com/kernel-platform/kernel/blob/main/docs/sync.md), "ZooKeeper
//! access control".
//!
//! ZooKeeper checks the right to delete a node on its *parent*, so what protects a holder's
//! node from being deleted by others is the ACL of the lock path it sits in, not its own.

use zookeeper_client::{Acl, Acls, AuthId, Permission};

use crate::{Secret, SyncError};

/// The root of every election path (H2's).
pub(crate) const LEADER_ROOT: &str = "/sync/regionleader";

/// Nodes that services with different identities all create children under: anyone may
/// create and read there, nobody may delete or change them (ZooKeeper removes them when
/// empty: they are containers).
const SHARED_ROOTS: [&str; 2] = ["/sync", LEADER_ROOT];

/// A digest identity and its password, as the session authenticates with them.
#[derive(Clone, Debug)]
pub(crate) struct DigestCredentials {
    pub(crate) user: String,
    pub(crate) password: Secret,
}

impl DigestCredentials {
    /// Checks `user` and `password` as ZooKeeper's digest scheme needs them.
    ///
    /// # Errors
    /// [`SyncError::InvalidConfig`] for an empty user or password, or a `:` in the user.
    pub(crate) fn checked(user: String, password: Secret) -> Result<Self, SyncError> {
        let reason = if user.is_empty() {
            Some("the user is empty")
        } else if user.contains(':') {
            Some("the user contains ':' (digest credentials are `user:password`)")
        } else if password.is_empty() {
            Some("the password is empty")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(SyncError::InvalidConfig {
                field: "digest_credentials",
                reason: reason.into(),
            }),
            None => Ok(DigestCredentials { user, password }),
        }
    }

    /// The `auth` packet of the digest scheme: `user:password`.
    pub(crate) fn auth_packet(&self) -> Vec<u8> {
        format!("{}:{}", self.user, self.password.expose()).into_bytes()
    }
}

/// Checks a peer's digest identity: `user:<base64 of the SHA-1 of user:password>`.
///
/// # Errors
/// [`SyncError::InvalidConfig`] (field `peer_digest`) if it is not of that form.
pub(crate) fn check_peer_digest(id: &str) -> Result<(), SyncError> {
    let invalid = |reason: &str| SyncError::InvalidConfig {
        field: "peer_digest",
        reason: reason.into(),
    };
    let Some((user, digest)) = id.split_once(':') else {
        return Err(invalid("expected `user:<base64 sha1 of user:password>`"));
    };
    if user.is_empty() {
        return Err(invalid("the user is empty"));
    }
    // The base64 of a 20-byte SHA-1: 27 characters and one `=`.
    let well_formed = digest.len() == 28
        && digest.ends_with('=')
        && digest[..27]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if well_formed {
        Ok(())
    } else {
        Err(invalid(&format!(
            "the digest of {user} is not the base64 of a SHA-1 (28 characters)"
        )))
    }
}

/// The ACLs of the nodes a backend creates.
#[derive(Debug)]
pub(crate) struct NodeAcls {
    /// Contender nodes: the lock and leader nodes themselves.
    node: Vec<Acl>,
    /// Lock and election paths, and the namespace nodes above them.
    dir: Vec<Acl>,
    /// [`SHARED_ROOTS`].
    shared: Vec<Acl>,
}

impl NodeAcls {
    /// Anyone may do anything: the behaviour without credentials.
    pub(crate) fn open() -> Self {
        let all = vec![Acl::new(Permission::ALL, AuthId::anyone())];
        NodeAcls {
            node: all.clone(),
            dir: all.clone(),
            shared: all,
        }
    }

    /// For a session authenticated with digest credentials: the creator's identity (the
    /// `auth` scheme, which the server turns into `digest:<user>:<digest>`) may do anything,
    /// each of `peers` (digest identities) may create, delete and read under the paths, and
    /// anyone may read.
    pub(crate) fn protected(peers: &[String]) -> Self {
        let creator = Acl::new(Permission::ALL, AuthId::new("auth", ""));
        let anyone_read = Acl::new(Permission::READ, AuthId::anyone());
        let mut dir = vec![creator.clone()];
        dir.extend(peers.iter().map(|peer| {
            Acl::new(
                Permission::CREATE | Permission::DELETE | Permission::READ,
                AuthId::new("digest", peer),
            )
        }));
        dir.push(anyone_read.clone());
        NodeAcls {
            node: vec![creator, anyone_read],
            dir,
            shared: vec![Acl::new(
                Permission::CREATE | Permission::READ,
                AuthId::anyone(),
            )],
        }
    }

    /// The ACL of a contender's node.
    pub(crate) fn node(&self) -> Acls<'_> {
        Acls::new(&self.node)
    }

    /// The ACL of the container at `path`: a lock or election path, one of its parents, or a
    /// shared root.
    pub(crate) fn dir(&self, path: &str) -> Acls<'_> {
        if SHARED_ROOTS.contains(&path) {
            Acls::new(&self.shared)
        } else {
            Acls::new(&self.dir)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_field(result: Result<impl std::fmt::Debug, SyncError>) -> &'static str {
        match result {
            Err(SyncError::InvalidConfig { field, .. }) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn credentials_need_a_user_without_a_colon_and_a_password() {
        for (user, password) in [("", "pw"), ("a:b", "pw"), ("svc", "")] {
            let result = DigestCredentials::checked(user.into(), Secret::new(password));
            assert_eq!(invalid_field(result), "digest_credentials", "{user:?}");
        }
        let ok = DigestCredentials::checked("svc".into(), Secret::new("p:w")).unwrap();
        assert_eq!(ok.auth_packet(), b"svc:p:w");
    }

    #[test]
    fn a_refused_password_is_never_in_the_error() {
        let error = DigestCredentials::checked("a:b".into(), Secret::new("hunter2")).unwrap_err();
        assert!(!format!("{error} {error:?}").contains("hunter2"));
    }

    #[test]
    fn peer_digests_are_a_user_and_a_base64_sha1() {
        check_peer_digest("svc-b:9430aq7oqpM2XdVlPoPLAutaGXw=").unwrap();
        for bad in [
            "svc-b",
            ":9430aq7oqpM2XdVlPoPLAutaGXw=",
            "svc-b:password",
            "svc-b:9430aq7oqpM2XdVlPoPLAutaGX!=",
        ] {
            assert_eq!(
                invalid_field(check_peer_digest(bad)),
                "peer_digest",
                "{bad}"
            );
        }
    }

    #[test]
    fn shared_roots_let_anyone_create_and_read_only() {
        let acls = NodeAcls::protected(&[]);
        for root in SHARED_ROOTS {
            let shared = acls.dir(root);
            assert_eq!(shared.len(), 1);
            assert_eq!(
                shared[0].permission(),
                Permission::CREATE | Permission::READ
            );
            assert_eq!(shared[0].scheme(), "world");
        }
        let dir = acls.dir("/sync/regionleader/com.example");
        assert_eq!(dir[0].scheme(), "auth");
        assert_eq!(dir[0].permission(), Permission::ALL);
        assert_eq!(dir[1].permission(), Permission::READ);
    }
}
