//! `kernel login USER` and `kernel logout`.

use std::io::IsTerminal;

use kernel_auth::{Auth, Credentials};
use tokio::io::AsyncBufReadExt;

use super::{out, out_json};
use crate::context::Context;
use crate::failure::Failure;
use crate::session::{self, Saved};

pub(crate) async fn login(
    context: &Context,
    username: &str,
    password_stdin: bool,
    device: &str,
    login_service: &str,
) -> Result<(), Failure> {
    // Connected first, so that a wrong broker URL is known before anyone types a password.
    let client = context.client().await?;
    let password = if password_stdin {
        read_stdin_line().await?
    } else if std::io::stdin().is_terminal() {
        prompt(username).await?
    } else {
        return Err(Failure::usage(
            "stdin is not a terminal to prompt on: pass the password on stdin with --password-stdin (e.g. `pass show x | kernel login ada --password-stdin`)",
        ));
    };
    if password.is_empty() {
        return Err(Failure::usage("no password given"));
    }
    let auth = Auth::builder(&client).login_service(login_service).build();
    let user = auth
        .authenticate(&Credentials::password(device, username, &password))
        .await?;
    let saved = Saved {
        session_id: user.session_id().to_owned(),
        user: username.to_owned(),
        user_id: user.id().to_owned(),
        roles: user.roles().to_vec(),
        login_service: login_service.to_owned(),
    };
    let path = session::save(&saved)?;
    if context.global.json {
        return out_json(&serde_json::json!({
            "user": saved.user,
            "user_id": saved.user_id,
            "roles": saved.roles,
            "session_file": path,
        }));
    }
    out(format_args!(
        "signed in as {} (roles {}); session saved in {}\n",
        saved.user,
        saved.roles.join(","),
        path.display()
    ));
    Ok(())
}

/// The first line of stdin, without its line ending.
async fn read_stdin_line() -> Result<String, Failure> {
    let mut line = String::new();
    tokio::io::BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await
        .map_err(|e| Failure::usage(format!("cannot read the password from stdin: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Asks for the password on the terminal, without echo (rpassword reads `/dev/tty`).
async fn prompt(username: &str) -> Result<String, Failure> {
    let question = format!("password for {username}: ");
    tokio::task::spawn_blocking(move || rpassword::prompt_password(question))
        .await
        .map_err(Failure::other)?
        .map_err(|e| Failure::usage(format!("cannot read the password from the terminal: {e}")))
}

pub(crate) async fn logout(context: &Context) -> Result<(), Failure> {
    let Some(saved) = session::load()? else {
        out("not signed in\n");
        return Ok(());
    };
    let client = context.client().await?;
    let auth = Auth::builder(&client)
        .login_service(&saved.login_service)
        .build();
    // Forget it locally even if the login service cannot be told: the file is the secret.
    let ended = auth.sign_out(&saved.session_id).await;
    session::remove()?;
    ended?;
    out(format_args!("signed out {}\n", saved.user));
    Ok(())
}
