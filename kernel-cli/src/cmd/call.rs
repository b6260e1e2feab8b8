//! `kernel call SERVICE ENDPOINT [JSON]`, with `--check` against the endpoint's schema.

use kernel_client::Client;
use kernel_errors::Error;

use super::out_json;
use crate::check::{Check, Side};
use crate::context::Context;
use crate::failure::Failure;
use crate::raw::RawJson;

pub(crate) async fn run(
    context: &Context,
    service: &str,
    endpoint: &str,
    request: &str,
    check: bool,
) -> Result<(), Failure> {
    let request = parse_request(request).await?;
    let client = context.client().await?;
    let session = context.session()?;
    let check = if check {
        let check = Check::fetch(&client, service, endpoint, session.as_deref()).await?;
        if let Check::Unavailable(why) = &check {
            super::warn(format_args!("{service}.{endpoint} is not checked: {why}"));
        }
        // Refused here, the request is never sent.
        check.check(Side::Request, service, endpoint, &request.0)?;
        Some(check)
    } else {
        None
    };
    let reply = raw_call(&client, service, endpoint, &request, session.as_deref()).await?;
    let verdict = match &check {
        Some(check) => check.check(Side::Response, service, endpoint, &reply.0),
        None => Ok(()),
    };
    match verdict {
        Ok(()) => out_json(&reply.0),
        // One JSON document on stdout: the violation, holding the response.
        Err(mut violation) if context.global.json => {
            violation.response = Some(reply.0);
            Err(violation.into())
        }
        // The response is printed even when it does not match: it is what the service said.
        Err(violation) => {
            out_json(&reply.0)?;
            Err(violation.into())
        }
    }
}

/// The request's JSON, from the argument or (`-`) stdin.
pub(crate) async fn parse_request(request: &str) -> Result<RawJson, Failure> {
    let text = if request == "-" {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut tokio::io::stdin(), &mut text)
            .await
            .map_err(|e| Failure::usage(format!("cannot read the request from stdin: {e}")))?;
        text
    } else {
        request.to_owned()
    };
    serde_json::from_str(&text)
        .map(RawJson)
        .map_err(|e| Failure::usage(format!("the request is not JSON: {e}")))
}

/// One call in JSON, sent once, bounded by the client's deadline.
pub(crate) async fn raw_call(
    client: &Client,
    service: &str,
    endpoint: &str,
    request: &RawJson,
    session: Option<&str>,
) -> Result<RawJson, Error> {
    let call = client.call::<RawJson>(service, endpoint, request).json();
    match session {
        Some(session) => call.session_id(session).await,
        None => call.await,
    }
}
