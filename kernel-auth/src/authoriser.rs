//! [`Authoriser`]: what an endpoint requires of the requests it runs.

use kernel_errors::Error;

use crate::codes;
use crate::scope::Scope;

/// What an endpoint requires, declared when the endpoint is built. The default is
/// [`Authoriser::admin`]: a user (or a service, by rule) with the `ADMIN` role, as in H2:
/// secure unless declared otherwise.
///
/// ```
/// use kernel_auth::{Authoriser, Scope};
///
/// let anonymous = Scope::anonymous();
/// assert!(Authoriser::Open.authorise(&anonymous).is_ok());
/// let refused = Authoriser::default().authorise(&anonymous).unwrap_err();
/// assert_eq!(refused.code(), "kernel.auth.notsignedin");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Authoriser {
    /// Anyone, signed in or not (H2's `OpenToTheWorldAuthoriser`).
    Open,
    /// Any signed-in user (H2's `SignInAuthoriser`).
    SignedIn,
    /// A user, or a service by rule, with any of these roles (H2's `RoleAuthoriser`).
    AnyRole(Vec<String>),
    /// A signed-in user with any of these roles (H2's `SignInRoleAuthoriser`).
    SignedInWithRole(Vec<String>),
}

impl Default for Authoriser {
    fn default() -> Self {
        Authoriser::admin()
    }
}

impl Authoriser {
    /// The `ADMIN` role (or any role under it).
    pub fn admin() -> Self {
        Authoriser::AnyRole(vec!["ADMIN".to_owned()])
    }

    /// Any of `roles`.
    pub fn any_role<R: Into<String>>(roles: impl IntoIterator<Item = R>) -> Self {
        Authoriser::AnyRole(roles.into_iter().map(Into::into).collect())
    }

    /// Whether the request in `scope` may run.
    ///
    /// # Errors
    /// `Forbidden` [`codes::NOT_SIGNED_IN`] when a user is required (or a role, and nobody
    /// acts for the request: no user, and no rule for the calling service here); `Forbidden`
    /// [`codes::BAD_ROLE`] when the user, or the role a rule gives the calling service, lacks
    /// every role accepted.
    pub fn authorise(&self, scope: &Scope) -> Result<(), Error> {
        let (require_user, roles) = match self {
            Authoriser::Open => return Ok(()),
            Authoriser::SignedIn => (true, &[][..]),
            Authoriser::AnyRole(roles) => (false, &roles[..]),
            Authoriser::SignedInWithRole(roles) => (true, &roles[..]),
        };
        let signed_in = scope.is_auth();
        if require_user && !signed_in {
            return Err(not_signed_in());
        }
        if roles.is_empty() || roles.iter().any(|role| scope.has_access(role)) {
            return Ok(());
        }
        if signed_in {
            return Err(Error::forbidden(
                codes::BAD_ROLE,
                format!("must have one of the roles {roles:?}"),
            ));
        }
        // Nobody signed in. A calling service whose rule grants a role, just not enough of
        // one, lacks the role; any other caller (whatever service it is) is anonymous here.
        match (scope.caller_service(), scope.assumed_role()) {
            (Some(caller), Some(assumed)) => Err(Error::forbidden(
                codes::BAD_ROLE,
                format!("{caller} calls this endpoint as {assumed}, which is not enough"),
            )),
            _ => Err(not_signed_in()),
        }
    }
}

fn not_signed_in() -> Error {
    Error::forbidden(
        codes::NOT_SIGNED_IN,
        "must be signed in to call this endpoint",
    )
}
