//! [`Scope`]: who a request acts for, and [`User`]: a verified session.

use std::sync::Arc;
use std::time::SystemTime;

use kernel_errors::Error;

use crate::auth::{Auth, Credentials};
use crate::rules::ServiceRules;
use crate::token::Claims;
use crate::{codes, has_role};

/// A signed-in user: the claims of a verified session token. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User(Arc<Verified>);

#[derive(Debug, PartialEq, Eq)]
struct Verified {
    claims: Claims,
    token: String,
}

impl User {
    pub(crate) fn new(claims: Claims, token: String) -> Self {
        User(Arc::new(Verified { claims, token }))
    }

    /// The user's id.
    pub fn id(&self) -> &str {
        &self.0.claims.user_id
    }

    /// The session's id (the `sessionID` header of calls made for the user).
    pub fn session_id(&self) -> &str {
        &self.0.claims.session_id
    }

    /// The user's roles.
    pub fn roles(&self) -> &[String] {
        &self.0.claims.roles
    }

    /// Whether the user has `role`, by H2's matching ([`has_role`]).
    pub fn has_role(&self, role: &str) -> bool {
        has_role(&self.0.claims.roles, role)
    }

    /// The mechanism the user signed in with.
    pub fn mechanism(&self) -> &str {
        &self.0.claims.mechanism
    }

    /// The kind of device.
    pub fn device(&self) -> &str {
        &self.0.claims.device
    }

    /// The application: the mechanism without its `h2.` prefix, if it has one (H2's rule).
    pub fn application(&self) -> &str {
        self.0.claims.mechanism.strip_prefix("h2.").unwrap_or("")
    }

    /// When the session's token expires.
    pub fn expires_at(&self) -> SystemTime {
        self.0.claims.expires_at()
    }

    /// Whether the session may be renewed.
    pub fn can_auto_renew(&self) -> bool {
        self.0.claims.renew.is_some()
    }

    /// All the claims.
    pub fn claims(&self) -> &Claims {
        &self.0.claims
    }

    /// The signed token.
    pub fn token(&self) -> &str {
        &self.0.token
    }
}

/// Who a request acts for: the signed-in user (if any), and the verified identity of the
/// service that sent it (if the transport knows it), against the service-to-service rules.
///
/// A service gives each request a scope (`request.scope()`); its session, if the request named
/// one, is recovered before the endpoint's authoriser runs. A scope of one's own (a batch job,
/// a test) comes from [`Auth::scope`].
#[derive(Clone, Debug)]
pub struct Scope {
    auth: Option<Auth>,
    rules: Arc<ServiceRules>,
    service: String,
    endpoint: String,
    caller_service: Option<String>,
    user: Option<User>,
    tried: bool,
}

impl Default for Scope {
    fn default() -> Self {
        Scope::anonymous()
    }
}

impl Scope {
    /// A scope that can sign no one in: for services without [`Auth`]. Nobody is signed in and
    /// no rule applies, so only open endpoints admit its requests.
    pub fn anonymous() -> Self {
        Scope::new(None, Arc::default(), "", "", None)
    }

    pub(crate) fn new(
        auth: Option<Auth>,
        rules: Arc<ServiceRules>,
        service: &str,
        endpoint: &str,
        caller_service: Option<&str>,
    ) -> Self {
        Scope {
            auth,
            rules,
            service: service.to_owned(),
            endpoint: endpoint.to_owned(),
            caller_service: caller_service.map(str::to_owned),
            user: None,
            tried: false,
        }
    }

    /// Signs in with `credentials` through the login service; the scope then acts for the user.
    ///
    /// # Errors
    /// `Unauthorized` [`codes::BAD_CREDENTIALS`] for wrong credentials (the scope has then
    /// tried to authenticate), the login service's error otherwise; `Unauthorized`
    /// [`codes::NOT_SIGNED_IN`] if the scope has no [`Auth`]. The scope is unchanged on error.
    pub async fn auth(&mut self, credentials: &Credentials) -> Result<&User, Error> {
        let auth = self.handle()?;
        match auth.authenticate(credentials).await {
            Ok(user) => {
                self.tried = true;
                Ok(self.user.insert(user))
            }
            Err(error) => {
                if error.code() == codes::BAD_CREDENTIALS {
                    self.tried = true;
                }
                Err(error)
            }
        }
    }

    /// Acts for the user of session `session_id`: from the cache, else from the login service
    /// (none if it does not exist).
    ///
    /// # Errors
    /// The login service's error; the scope is unchanged then.
    pub async fn recover_session(&mut self, session_id: &str) -> Result<(), Error> {
        let auth = self.handle()?;
        let user = auth.recover(session_id).await?;
        self.user = user;
        self.tried = true;
        Ok(())
    }

    /// Ends the user's session (at the login service and in this process's cache) and forgets
    /// the user.
    ///
    /// # Errors
    /// The login service's error; the scope is unchanged then.
    pub async fn sign_out(&mut self) -> Result<(), Error> {
        let Some(user) = &self.user else {
            return Ok(());
        };
        self.handle()?.sign_out(user.session_id()).await?;
        self.clean();
        Ok(())
    }

    fn handle(&self) -> Result<Auth, Error> {
        self.auth.clone().ok_or_else(|| {
            Error::unauthorized(
                codes::NOT_SIGNED_IN,
                "this service has no auth configured: nobody can sign in",
            )
        })
    }

    /// Whether a user is signed in.
    pub fn is_auth(&self) -> bool {
        self.user.is_some()
    }

    /// Whether a session recovery or sign-in has been tried (and not failed for lack of an
    /// answer).
    pub fn has_tried_auth(&self) -> bool {
        self.tried
    }

    /// The signed-in user, if any.
    pub fn auth_user(&self) -> Option<&User> {
        self.user.as_ref()
    }

    /// The calling service's verified identity, if the transport knows it.
    pub fn caller_service(&self) -> Option<&str> {
        self.caller_service.as_deref()
    }

    /// Whether the request may act with `role`: the user has it, or a service-to-service rule
    /// gives the calling service a role that covers it for this endpoint.
    pub fn has_access(&self, role: &str) -> bool {
        if self.user.as_ref().is_some_and(|user| user.has_role(role)) {
            return true;
        }
        self.assumed_role()
            .is_some_and(|assumed| has_role(&[assumed], role))
    }

    /// The role a service-to-service rule gives the calling service here, if any.
    pub fn assumed_role(&self) -> Option<&str> {
        let caller = self.caller_service.as_deref()?;
        self.rules
            .assumed_role(caller, &self.service, &self.endpoint)
    }

    /// Forgets the user (the calling service's identity stays).
    pub fn clean(&mut self) {
        self.user = None;
        self.tried = false;
    }
}
