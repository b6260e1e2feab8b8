//! [`ServiceRules`]: which calling service may act with which role on which endpoint.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One service-to-service rule: calls from `caller` to `service`'s `endpoint` carry `role`.
///
/// `caller` is the calling service's *verified* identity: the broker user it connects as
/// (RabbitMQ checks the `user_id` property of every message against the connection's user),
/// never the `from` header. `endpoint` may be `*` for every endpoint of the service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRule {
    /// The calling service (its broker user).
    pub caller: String,
    /// The service called.
    pub service: String,
    /// The endpoint called, or `*`.
    pub endpoint: String,
    /// The role the call is made with.
    pub role: String,
}

/// The service-to-service rules in force: H2's table of assumed roles, keyed by verified
/// identity.
///
/// ```
/// use kernel_auth::{ServiceRule, ServiceRules};
///
/// let rules = ServiceRules::new([ServiceRule {
///     caller: "com.example.billing".into(),
///     service: "com.example.users".into(),
///     endpoint: "get".into(),
///     role: "ADMIN.USERS.READ".into(),
/// }]);
/// assert_eq!(rules.assumed_role("com.example.billing", "com.example.users", "get"), Some("ADMIN.USERS.READ"));
/// assert_eq!(rules.assumed_role("com.example.billing", "com.example.users", "delete"), None);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceRules {
    /// (caller, service, endpoint or `*`) → role.
    roles: HashMap<(String, String, String), String>,
}

impl ServiceRules {
    /// The rules given (a later rule for the same caller, service and endpoint wins).
    pub fn new(rules: impl IntoIterator<Item = ServiceRule>) -> Self {
        ServiceRules {
            roles: rules
                .into_iter()
                .map(|rule| ((rule.caller, rule.service, rule.endpoint), rule.role))
                .collect(),
        }
    }

    /// The role calls from `caller` to `service`'s `endpoint` carry, if a rule grants one (a
    /// rule for the endpoint wins over one for `*`).
    pub fn assumed_role(&self, caller: &str, service: &str, endpoint: &str) -> Option<&str> {
        let key = |endpoint: &str| (caller.to_owned(), service.to_owned(), endpoint.to_owned());
        self.roles
            .get(&key(endpoint))
            .or_else(|| self.roles.get(&key("*")))
            .map(String::as_str)
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }
}
