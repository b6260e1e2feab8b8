//! The kernel options of `kernel/options.proto`, read from the compiled descriptors.
//!
//! prost-build hands service generators `prost_types` options, which drop extension values;
//! the descriptor pool protox builds keeps them, so the settings are read here first and the
//! generator looks them up by service and rpc.

use std::collections::{BTreeMap, HashMap};

use prost_reflect::{DescriptorPool, DynamicMessage, ExtensionDescriptor, Value};

use crate::Error;

/// The name of the options file teams import.
pub(crate) const OPTIONS_FILE: &str = "kernel/options.proto";
/// Its source, shipped in the crate: teams need not copy it.
pub(crate) const OPTIONS_PROTO: &str = include_str!("../proto/kernel/options.proto");

/// What the options of one proto `service` say, defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceSettings {
    /// The name it is served and called under.
    pub(crate) service_name: String,
    /// By rpc name (as in the proto).
    pub(crate) methods: HashMap<String, MethodSettings>,
}

/// What the options of one rpc say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MethodSettings {
    /// The endpoint name.
    pub(crate) endpoint: String,
    pub(crate) mean_ms: Option<u32>,
    pub(crate) upper95_ms: Option<u32>,
    /// `None`: the kernel's default (ADMIN).
    pub(crate) authoriser: Option<AuthoriserOption>,
}

/// The `(kernel.authoriser)` values: each maps to one `kernel_auth::Authoriser`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AuthoriserOption {
    Open,
    SignedIn,
    Admin,
    AnyRole(Vec<String>),
    SignedInWithRole(Vec<String>),
}

impl AuthoriserOption {
    fn parse(value: &str) -> Result<Self, String> {
        let roles = |list: &str| -> Result<Vec<String>, String> {
            let roles: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect();
            if roles.is_empty() {
                return Err(format!("authoriser {value:?} names no role"));
            }
            Ok(roles)
        };
        match value {
            "open" => Ok(Self::Open),
            "signed_in" => Ok(Self::SignedIn),
            "admin" => Ok(Self::Admin),
            _ => {
                if let Some(list) = value.strip_prefix("roles:") {
                    Ok(Self::AnyRole(roles(list)?))
                } else if let Some(list) = value.strip_prefix("signed_in_roles:") {
                    Ok(Self::SignedInWithRole(roles(list)?))
                } else {
                    Err(format!(
                        "authoriser {value:?} is not one of \"open\", \"signed_in\", \"admin\", \
                         \"roles:A,B\", \"signed_in_roles:A,B\""
                    ))
                }
            }
        }
    }
}

/// The kernel's extensions, looked up once (absent if no file imports the options).
struct Extensions {
    service_name: Option<ExtensionDescriptor>,
    mean_ms: Option<ExtensionDescriptor>,
    upper95_ms: Option<ExtensionDescriptor>,
    authoriser: Option<ExtensionDescriptor>,
    endpoint: Option<ExtensionDescriptor>,
}

impl Extensions {
    fn new(pool: &DescriptorPool) -> Self {
        let get = |name: &str| pool.get_extension_by_name(&format!("kernel.{name}"));
        Extensions {
            service_name: get("service_name"),
            mean_ms: get("mean_ms"),
            upper95_ms: get("upper95_ms"),
            authoriser: get("authoriser"),
            endpoint: get("endpoint"),
        }
    }
}

fn string(options: &DynamicMessage, extension: Option<&ExtensionDescriptor>) -> Option<String> {
    let extension = extension.filter(|e| options.has_extension(e))?;
    match options.get_extension(extension).as_ref() {
        Value::String(value) => Some(value.clone()),
        _ => None,
    }
}

fn uint(options: &DynamicMessage, extension: Option<&ExtensionDescriptor>) -> Option<u32> {
    let extension = extension.filter(|e| options.has_extension(e))?;
    match options.get_extension(extension).as_ref() {
        Value::U32(value) => Some(*value),
        _ => None,
    }
}

/// The settings of every service in `pool`, by full proto name (`acme.shop.v1.Shop`).
pub(crate) fn read(pool: &DescriptorPool) -> Result<BTreeMap<String, ServiceSettings>, Error> {
    let extensions = Extensions::new(pool);
    let mut services = BTreeMap::new();
    for service in pool.services() {
        let invalid = |target: &str, reason: String| Error::InvalidOption {
            target: target.to_owned(),
            reason,
        };
        let full_name = service.full_name().to_owned();
        let service_name = string(&service.options(), extensions.service_name.as_ref())
            .unwrap_or_else(|| full_name.to_ascii_lowercase());
        if service_name.is_empty() || service_name.len() > 255 {
            return Err(invalid(
                &full_name,
                format!("service_name {service_name:?} must be 1 to 255 bytes"),
            ));
        }
        let mut methods = HashMap::new();
        let mut endpoints = HashMap::new();
        for method in service.methods() {
            let target = method.full_name().to_owned();
            if method.is_client_streaming() || method.is_server_streaming() {
                return Err(Error::Streaming(target));
            }
            let options = method.options();
            let endpoint = string(&options, extensions.endpoint.as_ref())
                .unwrap_or_else(|| method.name().to_ascii_lowercase());
            if !valid_endpoint_name(&endpoint) {
                return Err(invalid(
                    &target,
                    format!(
                        "endpoint {endpoint:?} must be lowercase ASCII letters, digits, `_`, `-` or `.`"
                    ),
                ));
            }
            if let Some(other) = endpoints.insert(endpoint.clone(), target.clone()) {
                return Err(invalid(
                    &target,
                    format!("endpoint {endpoint:?} is also the endpoint of {other}"),
                ));
            }
            let authoriser = string(&options, extensions.authoriser.as_ref())
                .map(|value| AuthoriserOption::parse(&value))
                .transpose()
                .map_err(|reason| invalid(&target, reason))?;
            let settings = MethodSettings {
                endpoint,
                mean_ms: uint(&options, extensions.mean_ms.as_ref()),
                upper95_ms: uint(&options, extensions.upper95_ms.as_ref()),
                authoriser,
            };
            for (name, value) in [
                ("mean_ms", settings.mean_ms),
                ("upper95_ms", settings.upper95_ms),
            ] {
                if value == Some(0) {
                    return Err(invalid(
                        &target,
                        format!("{name} must be greater than zero"),
                    ));
                }
            }
            methods.insert(method.name().to_owned(), settings);
        }
        services.insert(
            full_name,
            ServiceSettings {
                service_name,
                methods,
            },
        );
    }
    Ok(services)
}

/// The kernel's rule for endpoint names (`kernel-server` checks it again at build time).
fn valid_endpoint_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles `source` (as `test.proto`) with the options file available.
    fn settings(source: &str) -> Result<BTreeMap<String, ServiceSettings>, Error> {
        let pool = crate::builder::compiler(&[], [("test.proto", source)])?
            .open_file("test.proto")?
            .descriptor_pool();
        read(&pool)
    }

    const SHOP: &str = r#"
        syntax = "proto3";
        package acme.shop.v1;
        import "kernel/options.proto";
        message Req {}
        message Rsp {}
        service Shop {
          rpc GetItem(Req) returns (Rsp) {
            option (kernel.mean_ms) = 20;
            option (kernel.upper95_ms) = 80;
            option (kernel.authoriser) = "open";
          }
          rpc PutItem(Req) returns (Rsp) {
            option (kernel.authoriser) = "roles:ADMIN.SHOP, STAFF";
            option (kernel.endpoint) = "put-item";
          }
          rpc Forget(Req) returns (Rsp);
        }
    "#;

    #[test]
    fn options_are_read_from_the_descriptors() {
        let services = settings(SHOP).unwrap();
        let shop = &services["acme.shop.v1.Shop"];
        assert_eq!(shop.service_name, "acme.shop.v1.shop");
        assert_eq!(
            shop.methods["GetItem"],
            MethodSettings {
                endpoint: "getitem".into(),
                mean_ms: Some(20),
                upper95_ms: Some(80),
                authoriser: Some(AuthoriserOption::Open),
            }
        );
        assert_eq!(shop.methods["PutItem"].endpoint, "put-item");
        assert_eq!(
            shop.methods["PutItem"].authoriser,
            Some(AuthoriserOption::AnyRole(vec![
                "ADMIN.SHOP".into(),
                "STAFF".into()
            ]))
        );
        assert_eq!(
            shop.methods["Forget"],
            MethodSettings {
                endpoint: "forget".into(),
                mean_ms: None,
                upper95_ms: None,
                authoriser: None,
            }
        );
    }

    #[test]
    fn service_name_option_replaces_the_default() {
        let source = SHOP.replace(
            "service Shop {",
            "service Shop { option (kernel.service_name) = \"com.acme.shop\";",
        );
        let services = settings(&source).unwrap();
        assert_eq!(services["acme.shop.v1.Shop"].service_name, "com.acme.shop");
    }

    #[test]
    fn services_without_the_options_file_get_the_defaults() {
        let source = r#"
            syntax = "proto3";
            package plain;
            message M {}
            service Echo { rpc Echo(M) returns (M); }
        "#;
        let services = settings(source).unwrap();
        assert_eq!(services["plain.Echo"].service_name, "plain.echo");
        assert_eq!(services["plain.Echo"].methods["Echo"].endpoint, "echo");
    }

    #[test]
    fn unknown_authoriser_is_refused_naming_the_rpc() {
        let source = SHOP.replace("\"open\"", "\"everyone\"");
        let error = settings(&source).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidOption { target, .. } if target == "acme.shop.v1.Shop.GetItem"),
            "{error}"
        );
    }

    #[test]
    fn invalid_endpoint_names_and_duplicates_are_refused() {
        let upper = SHOP.replace("\"put-item\"", "\"PutItem\"");
        assert!(matches!(settings(&upper), Err(Error::InvalidOption { .. })));
        let duplicate = SHOP.replace("\"put-item\"", "\"getitem\"");
        assert!(matches!(
            settings(&duplicate),
            Err(Error::InvalidOption { .. })
        ));
    }

    #[test]
    fn streaming_rpcs_are_refused() {
        let source = SHOP.replace("rpc Forget(Req)", "rpc Forget(stream Req)");
        assert!(matches!(settings(&source), Err(Error::Streaming(_))));
    }

    #[test]
    fn authoriser_values_parse() {
        use AuthoriserOption::*;
        assert_eq!(AuthoriserOption::parse("signed_in"), Ok(SignedIn));
        assert_eq!(AuthoriserOption::parse("admin"), Ok(Admin));
        assert_eq!(
            AuthoriserOption::parse("signed_in_roles:A"),
            Ok(SignedInWithRole(vec!["A".into()]))
        );
        assert!(AuthoriserOption::parse("roles:").is_err());
        assert!(AuthoriserOption::parse("roles: , ").is_err());
    }
}
