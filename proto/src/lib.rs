//! The kernel's protobuf messages, with the standard protobuf JSON mapping.
//!
//! `kernel-proto` sits at the bottom of the workspace: [`platform`] holds the messages of the
//! wire contract (the platform error carried by every error reply, and the default endpoints
//! `health`, `stats`, `loadedconfig` and `jsonschema`), [`login`] the login service's messages
//! that `kernel-auth` calls, and [`examples`] the greeter used by examples and tests. Every message is a [`prost::Message`] and implements
//! `serde::Serialize`/`Deserialize` in the proto3 JSON mapping (camelCase names, enums by name,
//! 64-bit integers as strings), so a service answers `application/json` requests from the same
//! types.
//!
//! The Rust code is generated from `proto/proto/**/*.proto` by `cargo xtask codegen` (protox,
//! no `protoc` needed) and checked in; CI fails when it is stale. Never edit it by hand.
//!
//! ```
//! use kernel_proto::platform::{PlatformError, platform_error::ErrorType};
//! use prost::Message as _;
//!
//! let error = PlatformError {
//!     r#type: ErrorType::NotFound as i32,
//!     code: "com.example.users.get.missing".into(),
//!     description: "user 42 not found".into(),
//!     http_code: 404,
//!     context: vec![],
//!     kind: "NOT_FOUND".into(),
//! };
//! let bytes = error.encode_to_vec();
//! assert_eq!(PlatformError::decode(bytes.as_slice()).unwrap(), error);
//!
//! let json = serde_json::to_string(&error).unwrap();
//! assert!(json.contains(r#""type":"NOT_FOUND""#));
//! assert!(json.contains(r#""httpCode":404"#));
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

#[rustfmt::skip]
#[allow(missing_docs, missing_debug_implementations, unreachable_pub, clippy::all, rust_2018_idioms)]
mod generated {
    pub mod platform {
        include!("generated/kernel.platform.v1.rs");
        include!("generated/kernel.platform.v1.serde.rs");
    }
    pub mod login {
        include!("generated/kernel.login.v1.rs");
        include!("generated/kernel.login.v1.serde.rs");
    }
    pub mod examples {
        include!("generated/kernel.examples.v1.rs");
        include!("generated/kernel.examples.v1.serde.rs");
    }
}

/// Messages of the platform itself (package `kernel.platform.v1`): the platform error and the
/// default endpoints' requests and responses.
pub mod platform {
    pub use crate::generated::platform::*;
}

/// Messages of the login service (package `kernel.login.v1`): `auth`, `readsession` and
/// `deletesession`.
pub mod login {
    pub use crate::generated::login::*;
}

/// The greeter of the examples and tests (package `kernel.examples.v1`): `HelloRequest`,
/// `HelloResponse` and the `Greeted` publication.
pub mod examples {
    pub use crate::generated::examples::*;
}

/// The encoded `google.protobuf.FileDescriptorSet` of every message in this crate, including
/// source comments. Tools that handle messages by name (JSON Schema, a command-line caller)
/// decode it at run time.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("generated/descriptor.bin");

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn embedded_descriptor_set_names_every_package() {
        let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)
            .expect("the checked-in descriptor set decodes");
        let packages: Vec<_> = set
            .file
            .iter()
            .filter_map(|f| f.package.as_deref())
            .collect();
        assert!(packages.contains(&"kernel.platform.v1"));
        assert!(packages.contains(&"kernel.login.v1"));
        let messages: Vec<_> = set
            .file
            .iter()
            .flat_map(|f| f.message_type.iter().filter_map(|m| m.name.as_deref()))
            .collect();
        for name in [
            "PlatformError",
            "HealthResponse",
            "StatsResponse",
            "AuthRequest",
        ] {
            assert!(
                messages.contains(&name),
                "{name} missing from the descriptor set"
            );
        }
    }

    #[test]
    fn json_mapping_is_proto3_canonical() {
        let stats = platform::StatsResponse {
            service_name: "com.example.greeter".into(),
            uptime_ms: 1_500,
            error_counts: [("kernel.server.capacity".to_owned(), 3)].into(),
            ..Default::default()
        };
        let json: serde_json::Value = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["serviceName"], "com.example.greeter");
        // 64-bit integers are strings in the proto3 JSON mapping.
        assert_eq!(json["uptimeMs"], "1500");
        assert_eq!(json["errorCounts"]["kernel.server.capacity"], "3");
        let back: platform::StatsResponse = serde_json::from_value(json).unwrap();
        assert_eq!(back, stats);
    }

    #[test]
    fn json_ignores_unknown_fields_and_reads_original_names() {
        let json = r#"{"greeting":"hi","served_by":"a","addedInAFutureVersion":1}"#;
        let reply: examples::HelloResponse = serde_json::from_str(json).unwrap();
        assert_eq!(
            (reply.greeting.as_str(), reply.served_by.as_str()),
            ("hi", "a")
        );
    }

    #[test]
    fn unknown_enum_values_survive_binary_decoding() {
        let check = platform::HealthCheck {
            status: 42,
            ..Default::default()
        };
        let decoded = platform::HealthCheck::decode(check.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.status, 42);
        assert!(platform::HealthStatus::try_from(decoded.status).is_err());
    }
}
