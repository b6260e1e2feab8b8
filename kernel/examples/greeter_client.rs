//! Calls the greeter (see `greeter_server.rs`) once per name given on the command line, and
//! once with no name to show a typed error. Exits non-zero if a greeting fails.
#![allow(clippy::print_stdout)] // an example speaks on stdout

use std::time::Duration;

use kernel::prelude::*;
use kernel::proto::examples::{HelloRequest, HelloResponse};

const GREETER: &str = "com.example.greeter";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let client = Client::from_env().await?;
    let mut names: Vec<String> = std::env::args().skip(1).collect();
    if names.is_empty() {
        names = vec!["Ada".into(), "Grace".into()];
    }
    for name in names {
        let reply: HelloResponse = client
            .call(GREETER, "hello", &HelloRequest { name })
            .deadline(Duration::from_secs(5))
            .await?;
        println!("{} (served by {})", reply.greeting, reply.served_by);
    }
    match client
        .call::<HelloResponse>(GREETER, "hello", &HelloRequest::default())
        .await
    {
        Err(error) if error.kind() == Kind::BadRequest => {
            println!("typed error, as expected: {error}");
            Ok(())
        }
        other => Err(Error::internal_server_error(
            "greeter_client.unexpected",
            format!("expected a BadRequest for an empty name, got {other:?}"),
        )),
    }
}
