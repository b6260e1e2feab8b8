//! `kernel login`, `kernel stats` and `kernel logout`: a session saved with mode 0600 and
//! sent with later calls.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

mod support;

use std::os::unix::fs::PermissionsExt;

use support::Platform;

/// Without a session `stats` (ADMIN) is refused; after `login` it is a table, an ADMIN
/// endpoint acts for ada, and after `logout` both are refused again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_then_admin_calls_and_stats_then_logout() {
    let platform = Platform::start().await;
    let run = platform.run(&["stats", &platform.greeter]).await;
    run.assert_code(1);
    assert!(
        run.stderr().contains("kernel.auth.notsignedin"),
        "{}",
        run.stderr()
    );

    platform.login_ada().await;
    let session_file = platform.config_dir.join("session");
    let mode = std::fs::metadata(&session_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&session_file).unwrap()).unwrap();
    assert_eq!(saved["user"], "ada");
    let run = platform.run(&["call", &platform.greeter, "whoami"]).await;
    run.assert_code(0);
    assert_eq!(run.json()["greeting"], saved["user_id"]);

    let run = platform.run(&["stats", &platform.greeter]).await;
    run.assert_code(0);
    let table = run.stdout();
    assert!(table.contains("ENDPOINT"), "{table}");
    assert!(table.contains("whoami"), "{table}");
    assert!(table.contains("1.2.3"), "{table}");

    let run = platform.run(&["stats", &platform.greeter, "--json"]).await;
    run.assert_code(0);
    let stats = run.json();
    assert_eq!(stats["serviceName"], platform.greeter.as_str());
    let whoami = stats["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "whoami")
        .unwrap()
        .clone();
    assert_eq!(whoami["successCount"], "1", "{whoami}");

    // `--anonymous` sends no session even though one is saved.
    platform
        .run(&["call", &platform.greeter, "whoami", "--anonymous"])
        .await
        .assert_code(1);

    platform.run(&["logout"]).await.assert_code(0);
    assert!(!session_file.exists());
    platform
        .run(&["call", &platform.greeter, "whoami"])
        .await
        .assert_code(1);
}

/// A wrong password is refused and saves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_saves_no_session() {
    let platform = Platform::start().await;
    let run = platform
        .run_with_stdin(&["login", "ada", "--password-stdin"], "wrong\n")
        .await;
    run.assert_code(1);
    assert!(!platform.config_dir.join("session").exists());
}

/// On a terminal, `login` without `--password-stdin` prompts for the password and signs in; not on a terminal, it refuses rather than read stdin unasked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_prompts_for_the_password_on_a_terminal() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let platform = Platform::start().await;
    let mut child = platform
        .command_on_a_terminal(&["login", "ada"])
        .spawn()
        .unwrap();
    let mut terminal = child.stdout.take().unwrap();
    // Type only once the prompt is on the screen.
    let mut screen = Vec::new();
    support::bounded("the password prompt", async {
        let mut chunk = [0; 256];
        while !String::from_utf8_lossy(&screen).contains("password for ada: ") {
            let n = terminal.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "the terminal closed: {}",
                String::from_utf8_lossy(&screen)
            );
            screen.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let mut keyboard = child.stdin.take().unwrap();
    keyboard
        .write_all(format!("{}\n", support::ADA_PASSWORD).as_bytes())
        .await
        .unwrap();
    let status = support::bounded("login to finish", async {
        terminal.read_to_end(&mut screen).await.unwrap();
        child.wait().await.unwrap()
    })
    .await;
    let screen = String::from_utf8_lossy(&screen);
    assert_eq!(status.code(), Some(0), "{screen}");
    assert!(screen.contains("signed in as ada"), "{screen}");
    // Whether the typed password was echoed is not asserted: rpassword writes the prompt
    // before it turns echo off, so a fast typist (this test) may beat it.
    assert!(platform.config_dir.join("session").exists());

    // stdin not a terminal (here /dev/null) and no --password-stdin: a usage mistake.
    let run = platform.run(&["login", "ada"]).await;
    run.assert_code(2);
    assert!(
        run.stderr().contains("--password-stdin"),
        "{}",
        run.stderr()
    );
}
