//! The broker users `up` makes for the tests besides `guest`: two distinct identities, so that
//! tests can check the `user_id` RabbitMQ verifies (docs/services.md, "Test users").

use super::{AMQP_PORT, RabbitMq};
use crate::Result;
use crate::services::probe;

/// A broker user `up` creates for the tests. Test-only: the passwords are in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::services) struct TestUser {
    /// The user name, which is also the `user_id` its messages carry.
    pub(in crate::services) name: &'static str,
    pub(in crate::services) password: &'static str,
    /// The environment variable with its URL.
    pub(in crate::services) env_var: &'static str,
}

/// The users `up` creates besides `guest` (docs/services.md): two distinct identities.
pub(in crate::services) const TEST_USERS: [TestUser; 2] = [
    TestUser {
        name: "kernel.test.alpha",
        password: "kernel-test-alpha",
        env_var: "KERNEL_AMQP_URL_ALPHA",
    },
    TestUser {
        name: "kernel.test.beta",
        password: "kernel-test-beta",
        env_var: "KERNEL_AMQP_URL_BETA",
    },
];

impl RabbitMq {
    /// The plain AMQP URL that logs in as `user` (`KERNEL_AMQP_URL_ALPHA`, …).
    pub(in crate::services) fn user_address(&self, user: &TestUser) -> String {
        format!(
            "amqp://{}:{}@{}:{AMQP_PORT}/%2f",
            user.name,
            user.password,
            probe::LOOPBACK
        )
    }

    /// Makes every [test user](TEST_USERS) able to log in and use `/`, on the running node.
    /// Idempotent and cheap when they are there: one AMQP login per user (milliseconds), and
    /// `rabbitmqctl` (about a second a call) only for a user whose login fails.
    pub(in crate::services) fn ensure_test_users(&self) -> Result<()> {
        for user in &TEST_USERS {
            if probe::amqp::open_as(AMQP_PORT, user.name, user.password).is_ok() {
                continue;
            }
            eprintln!("services: creating the RabbitMQ test user {}", user.name);
            for args in user_setup(user, self.node.ctl_output(&user_add(user))?)? {
                self.node.ctl(&args)?;
            }
            probe::amqp::open_as(AMQP_PORT, user.name, user.password)
                .map_err(|e| format!("the test user {} still cannot log in: {e}", user.name))?;
        }
        Ok(())
    }
}

/// `rabbitmqctl add_user <name> <password>`.
fn user_add(user: &TestUser) -> [&'static str; 3] {
    ["add_user", user.name, user.password]
}

/// What to run after [`user_add`] finished with `(succeeded, output)`: a user that already
/// existed gets its password set (it may have another), then every user gets every permission
/// on `/`.
///
/// # Errors
/// `add_user` failed for another reason than an existing user.
fn user_setup(user: &TestUser, added: (bool, String)) -> Result<Vec<Vec<&'static str>>> {
    let mut commands = Vec::new();
    match added {
        (true, _) => {}
        (false, output)
            if output.contains("already exists") || output.contains("user_already_exists") =>
        {
            commands.push(vec!["change_password", user.name, user.password]);
        }
        (false, output) => {
            return Err(format!("rabbitmqctl add_user {} failed: {output}", user.name).into());
        }
    }
    commands.push(vec![
        "set_permissions",
        "-p",
        "/",
        user.name,
        ".*",
        ".*",
        ".*",
    ]);
    Ok(commands)
}

/// `args` with the password of `add_user` / `change_password` replaced by `***`.
pub(super) fn redact<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut shown = args.to_vec();
    if matches!(shown.first(), Some(&("add_user" | "change_password")))
        && let Some(password) = shown.get_mut(2)
    {
        *password = "***";
    }
    shown
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::services::tls::Tls;

    fn rabbit() -> RabbitMq {
        RabbitMq::new(
            PathBuf::from("/x/.services/rabbitmq"),
            Tls::new(PathBuf::from("/x/.services/tls")),
        )
    }

    #[test]
    fn a_test_user_is_added_or_given_its_password_then_every_permission_on_slash() {
        let alpha = &TEST_USERS[0];
        assert_eq!(
            user_add(alpha),
            ["add_user", "kernel.test.alpha", "kernel-test-alpha"]
        );
        let grant = vec![
            "set_permissions",
            "-p",
            "/",
            "kernel.test.alpha",
            ".*",
            ".*",
            ".*",
        ];
        let added = user_setup(alpha, (true, "Adding user".into())).unwrap();
        assert_eq!(added, std::slice::from_ref(&grant));
        let existed = (
            false,
            "Error:\nuser_already_exists: kernel.test.alpha".into(),
        );
        assert_eq!(
            user_setup(alpha, existed).unwrap(),
            [
                vec!["change_password", "kernel.test.alpha", "kernel-test-alpha"],
                grant
            ]
        );
        assert!(user_setup(alpha, (false, "Error: unable to connect to node".into())).is_err());
    }

    #[test]
    fn passwords_never_appear_in_a_failed_commands_message() {
        assert_eq!(
            redact(&["add_user", "u", "secret"]),
            ["add_user", "u", "***"]
        );
        assert_eq!(
            redact(&["change_password", "u", "secret"]),
            ["change_password", "u", "***"]
        );
        assert_eq!(redact(&["await_startup"]), ["await_startup"]);
    }

    #[test]
    fn test_users_have_urls_of_their_own() {
        let rabbit = rabbit();
        let urls: Vec<String> = TEST_USERS.iter().map(|u| rabbit.user_address(u)).collect();
        assert_eq!(
            urls,
            [
                "amqp://kernel.test.alpha:kernel-test-alpha@127.0.0.1:5682/%2f",
                "amqp://kernel.test.beta:kernel-test-beta@127.0.0.1:5682/%2f"
            ]
        );
    }

    /// On the broker `services up` started: every test user logs in and opens `/` (so `up`
    /// made them), and a wrong password is refused.
    #[test]
    fn amqp_test_users_open_the_vhost_and_a_wrong_password_does_not() {
        let _ = kernel_testkit::engine_address("KERNEL_AMQP_URL"); // names the command if absent
        for user in &TEST_USERS {
            probe::amqp::open_as(AMQP_PORT, user.name, user.password).unwrap();
        }
        let refused = probe::amqp::open_as(AMQP_PORT, TEST_USERS[0].name, "wrong").unwrap_err();
        assert!(refused.to_string().contains("cannot log in"), "{refused}");
    }
}
