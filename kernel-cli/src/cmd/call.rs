//! `kernel call SERVICE ENDPOINT [JSON]`.

use kernel_client::Client;
use kernel_errors::Error;

use super::out_json;
use crate::context::Context;
use crate::failure::Failure;
use crate::raw::RawJson;

pub(crate) async fn run(
    context: &Context,
    service: &str,
    endpoint: &str,
    request: &str,
) -> Result<(), Failure> {
    let request = parse_request(request).await?;
    let client = context.client().await?;
    let session = context.session()?;
    let reply = raw_call(&client, service, endpoint, &request, session.as_deref()).await?;
    out_json(&reply.0)
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
