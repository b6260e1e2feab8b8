//! `kernel login USER` and `kernel logout`.

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
    if !password_stdin {
        // No prompt yet: echo-free terminal input needs a dependency we do not take.
        return Err(Failure::usage(
            "pass the password on stdin with --password-stdin (e.g. `pass show x | kernel login ada --password-stdin`)",
        ));
    }
    let mut password = String::new();
    tokio::io::BufReader::new(tokio::io::stdin())
        .read_line(&mut password)
        .await
        .map_err(|e| Failure::usage(format!("cannot read the password from stdin: {e}")))?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(Failure::usage("no password on stdin"));
    }
    let client = context.client().await?;
    let auth = Auth::builder(&client).login_service(login_service).build();
    let user = auth
        .authenticate(&Credentials::password(device, username, password))
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
