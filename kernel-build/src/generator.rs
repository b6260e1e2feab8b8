//! The service generator: a typed client, a service trait and its server per proto `service`.
//!
//! For `service Shop` in package `acme.shop.v1` (the kernel reached as `K`, `::kernel` by
//! default), next to prost's messages:
//!
//! ```text
//! pub const SHOP_SERVICE_NAME: &str                   the name it is served and called under
//! pub struct ShopClient                               new(&K::client::Client), with_service_name,
//!                                                      service_name, and per rpc:
//!     fn get_item<'a>(&'a self, &'a Req) -> K::client::Call<'a, Rsp>
//! pub trait Shop: Send + Sync + 'static               per rpc:
//!     fn get_item(&self, K::server::Request<Req>) -> impl Future<Output = Result<Rsp, K::errors::Error>> + Send
//! pub struct ShopServer<T: Shop>                      new(T), from_arc(Arc<T>), endpoints(),
//!                                                      register(K::server::ServiceBuilder)
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use prost_build::{Comments, Method, Service, ServiceGenerator};

use crate::options::{AuthoriserOption, MethodSettings, ServiceSettings};

/// Generates the kernel code of each service into prost's output for its package.
#[derive(Debug)]
pub(crate) struct Generator {
    /// By full proto service name.
    pub(crate) settings: BTreeMap<String, ServiceSettings>,
    /// The path of the kernel umbrella (or a module shaped like it).
    pub(crate) kernel: String,
    pub(crate) client: bool,
    pub(crate) server: bool,
}

impl ServiceGenerator for Generator {
    fn generate(&mut self, service: Service, buf: &mut String) {
        let full_name = if service.package.is_empty() {
            service.proto_name.clone()
        } else {
            format!("{}.{}", service.package, service.proto_name)
        };
        let settings = self.settings.get(&full_name);
        let service_name = settings.map_or_else(
            || full_name.to_ascii_lowercase(),
            |s| s.service_name.clone(),
        );
        let methods: Vec<(&Method, MethodSettings)> = service
            .methods
            .iter()
            .map(|method| {
                let settings = settings
                    .and_then(|s| s.methods.get(&method.proto_name))
                    .cloned()
                    .unwrap_or_else(|| MethodSettings {
                        endpoint: method.proto_name.to_ascii_lowercase(),
                        mean_ms: None,
                        upper95_ms: None,
                        authoriser: None,
                    });
                (method, settings)
            })
            .collect();
        let code = Code {
            kernel: &self.kernel,
            service: &service,
            full_name: &full_name,
            methods: &methods,
        };
        code.service_name_const(buf, &service_name);
        if self.client {
            code.client(buf);
        }
        if self.server {
            code.server_trait(buf);
            code.server(buf);
        }
    }
}

/// The code of one service.
struct Code<'a> {
    kernel: &'a str,
    service: &'a Service,
    full_name: &'a str,
    methods: &'a [(&'a Method, MethodSettings)],
}

// `write!` to a `String` cannot fail: its results are ignored throughout.
impl Code<'_> {
    fn const_name(&self) -> String {
        format!("{}_SERVICE_NAME", screaming_snake(&self.service.name))
    }

    fn service_name_const(&self, buf: &mut String, service_name: &str) {
        let _ = writeln!(
            buf,
            "/// The name `{}` is served and called under unless told otherwise (the\n\
             /// `kernel.service_name` option, or else its full proto name lowercased).\n\
             pub const {}: &str = {service_name:?};",
            self.full_name,
            self.const_name(),
        );
    }

    fn client(&self, buf: &mut String) {
        let k = self.kernel;
        let name = &self.service.name;
        let client = format!("{name}Client");
        let _ = writeln!(
            buf,
            "/// A typed client of `{full}`: one method per rpc, each returning a\n\
             /// [`Call`]({k}::client::Call) to adjust (deadline, session, ...) and await.\n\
             ///",
            full = self.full_name,
        );
        append_comments(buf, &self.service.comments);
        let _ = writeln!(
            buf,
            "#[derive(Clone, Debug)]\n\
             pub struct {client} {{\n\
                 client: {k}::client::Client,\n\
                 service: ::std::string::String,\n\
             }}\n\
             impl {client} {{\n\
                 /// Calls the service under [`{const_name}`] through `client` (a cheap clone).\n\
                 pub fn new(client: &{k}::client::Client) -> Self {{\n\
                     Self::with_service_name(client, {const_name})\n\
                 }}\n\
                 /// Calls the service under `service` instead (e.g. a renamed deployment).\n\
                 pub fn with_service_name(\n\
                     client: &{k}::client::Client,\n\
                     service: impl ::std::convert::Into<::std::string::String>,\n\
                 ) -> Self {{\n\
                     Self {{ client: client.clone(), service: service.into() }}\n\
                 }}\n\
                 /// The service name this client calls.\n\
                 pub fn service_name(&self) -> &str {{\n\
                     &self.service\n\
                 }}\n\
                 /// The client the calls go through.\n\
                 pub fn client(&self) -> &{k}::client::Client {{\n\
                     &self.client\n\
                 }}",
            const_name = self.const_name(),
        );
        for (method, settings) in self.methods {
            let _ = writeln!(
                buf,
                "/// Calls the `{endpoint}` endpoint (rpc `{rpc}`).\n///",
                endpoint = settings.endpoint,
                rpc = method.proto_name,
            );
            append_comments(buf, &method.comments);
            let _ = writeln!(
                buf,
                "pub fn {fn_name}<'a>(&'a self, request: &'a {input}) -> {k}::client::Call<'a, {output}> {{\n\
                     self.client.call(&self.service, {endpoint:?}, request)\n\
                 }}",
                fn_name = method.name,
                input = method.input_type,
                output = method.output_type,
                endpoint = settings.endpoint,
            );
        }
        buf.push_str("}\n");
    }

    fn server_trait(&self, buf: &mut String) {
        let k = self.kernel;
        let name = &self.service.name;
        let _ = writeln!(
            buf,
            "/// The `{full}` service: implement it (`async fn` works) and serve it with\n\
             /// [`{name}Server`].\n\
             ///",
            full = self.full_name,
        );
        append_comments(buf, &self.service.comments);
        let _ = writeln!(
            buf,
            "pub trait {name}: ::std::marker::Send + ::std::marker::Sync + 'static {{"
        );
        for (method, settings) in self.methods {
            let _ = writeln!(
                buf,
                "/// Handles the `{endpoint}` endpoint (rpc `{rpc}`).\n///",
                endpoint = settings.endpoint,
                rpc = method.proto_name,
            );
            append_comments(buf, &method.comments);
            let _ = writeln!(
                buf,
                "fn {fn_name}(&self, request: {k}::server::Request<{input}>) -> impl \
                 ::std::future::Future<Output = ::std::result::Result<{output}, {k}::errors::Error>> \
                 + ::std::marker::Send;",
                fn_name = method.name,
                input = method.input_type,
                output = method.output_type,
            );
        }
        buf.push_str("}\n");
    }

    fn server(&self, buf: &mut String) {
        let k = self.kernel;
        let name = &self.service.name;
        let server = format!("{name}Server");
        let _ = writeln!(
            buf,
            "/// Serves a [`{name}`]: its endpoints, with the service levels and authorisers\n\
             /// the proto declares (the kernel's defaults where it declares none: only\n\
             /// `ADMIN` may call).\n\
             pub struct {server}<T> {{\n\
                 inner: ::std::sync::Arc<T>,\n\
             }}\n\
             impl<T> ::std::clone::Clone for {server}<T> {{\n\
                 fn clone(&self) -> Self {{\n\
                     Self {{ inner: ::std::sync::Arc::clone(&self.inner) }}\n\
                 }}\n\
             }}\n\
             impl<T> ::std::fmt::Debug for {server}<T> {{\n\
                 fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {{\n\
                     f.debug_struct({server:?}).finish_non_exhaustive()\n\
                 }}\n\
             }}\n\
             impl<T: {name}> {server}<T> {{\n\
                 /// Serves `service`.\n\
                 pub fn new(service: T) -> Self {{\n\
                     Self::from_arc(::std::sync::Arc::new(service))\n\
                 }}\n\
                 /// Serves a service already shared.\n\
                 pub fn from_arc(service: ::std::sync::Arc<T>) -> Self {{\n\
                     Self {{ inner: service }}\n\
                 }}\n\
                 /// The service's endpoints, one per rpc, to add to a service builder.\n\
                 pub fn endpoints(&self) -> ::std::vec::Vec<{k}::server::Endpoint> {{\n\
                     ::std::vec::Vec::from([",
        );
        for (method, settings) in self.methods {
            let _ = write!(
                buf,
                "{k}::server::Endpoint::with_state(\n\
                     {endpoint:?},\n\
                     ::std::sync::Arc::clone(&self.inner),\n\
                     |service: ::std::sync::Arc<T>, request: {k}::server::Request<{input}>| async move {{\n\
                         service.{fn_name}(request).await\n\
                     }},\n\
                 )",
                endpoint = settings.endpoint,
                input = method.input_type,
                fn_name = method.name,
            );
            if let Some(ms) = settings.mean_ms {
                let _ = write!(buf, ".mean_time(::std::time::Duration::from_millis({ms}))");
            }
            if let Some(ms) = settings.upper95_ms {
                let _ = write!(buf, ".upper95(::std::time::Duration::from_millis({ms}))");
            }
            if let Some(authoriser) = &settings.authoriser {
                let _ = write!(buf, ".authoriser({})", authoriser_expr(k, authoriser));
            }
            buf.push_str(",\n");
        }
        let _ = writeln!(
            buf,
            "])\n\
                 }}\n\
                 /// Adds the endpoints to `builder`, and the descriptors of this module's\n\
                 /// messages ([`FILE_DESCRIPTOR_SET`]) so that `jsonschema` describes them.\n\
                 pub fn register(&self, builder: {k}::server::ServiceBuilder) -> {k}::server::ServiceBuilder {{\n\
                     self.endpoints()\n\
                         .into_iter()\n\
                         .fold(builder, {k}::server::ServiceBuilder::endpoint)\n\
                         .descriptors(FILE_DESCRIPTOR_SET)\n\
                 }}\n\
             }}"
        );
    }
}

/// The Rust expression of an authoriser.
fn authoriser_expr(k: &str, authoriser: &AuthoriserOption) -> String {
    let list = |roles: &[String]| {
        roles
            .iter()
            .map(|r| format!("{r:?}.to_owned()"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match authoriser {
        AuthoriserOption::Open => format!("{k}::auth::Authoriser::Open"),
        AuthoriserOption::SignedIn => format!("{k}::auth::Authoriser::SignedIn"),
        AuthoriserOption::Admin => format!("{k}::auth::Authoriser::admin()"),
        AuthoriserOption::AnyRole(roles) => {
            format!(
                "{k}::auth::Authoriser::AnyRole(::std::vec::Vec::from([{}]))",
                list(roles)
            )
        }
        AuthoriserOption::SignedInWithRole(roles) => format!(
            "{k}::auth::Authoriser::SignedInWithRole(::std::vec::Vec::from([{}]))",
            list(roles)
        ),
    }
}

/// The proto comments as doc lines, after a blank doc line; nothing if there are none.
fn append_comments(buf: &mut String, comments: &Comments) {
    if comments.leading.is_empty() && comments.trailing.is_empty() {
        // Drop the trailing `///` separator already written.
        if buf.ends_with("///\n") {
            buf.truncate(buf.len() - 4);
        }
        return;
    }
    comments.append_with_indent(0, buf);
}

/// `ShopItems` -> `SHOP_ITEMS`.
fn screaming_snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut previous_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() && previous_lower {
            out.push('_');
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn const_names_are_screaming_snake_case() {
        assert_eq!(screaming_snake("Shop"), "SHOP");
        assert_eq!(screaming_snake("ShopItems"), "SHOP_ITEMS");
        assert_eq!(screaming_snake("V2Shop"), "V2_SHOP");
    }

    #[test]
    fn authorisers_become_kernel_auth_expressions() {
        assert_eq!(
            authoriser_expr("::kernel", &AuthoriserOption::Open),
            "::kernel::auth::Authoriser::Open"
        );
        assert_eq!(
            authoriser_expr(
                "k",
                &AuthoriserOption::AnyRole(vec!["A.B".into(), "C".into()])
            ),
            "k::auth::Authoriser::AnyRole(::std::vec::Vec::from([\"A.B\".to_owned(), \"C\".to_owned()]))"
        );
    }
}
