//! [`Types`]: protobuf messages by name at run time, so that `kernel watch` decodes
//! publications to JSON without generated code: by the name `--type` gives, the platform's
//! table of its own topics names, or a subscriber's announcement names.
//!
//! The pool holds the platform's messages (`kernel_proto::FILE_DESCRIPTOR_SET`: the platform,
//! login and example packages) and those of any `--descriptor-set FILE` (an encoded
//! `google.protobuf.FileDescriptorSet`, such as `protoc --include_imports -o FILE` writes,
//! or the `<package>.fds.bin` kernel-build leaves in `OUT_DIR`).

use std::path::Path;

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use crate::failure::Failure;

/// Message types known by full name.
#[derive(Debug)]
pub(crate) struct Types {
    pool: DescriptorPool,
}

impl Types {
    /// The platform's messages and those of each file in `descriptor_sets`.
    ///
    /// # Errors
    /// [`Failure::Usage`] when a file cannot be read, does not decode, or refers to types no
    /// set defines. A file the pool already has (by name) is skipped, so sets that each carry
    /// their imports merge.
    pub(crate) fn load(descriptor_sets: &[impl AsRef<Path>]) -> Result<Types, Failure> {
        let mut pool = DescriptorPool::new();
        pool.decode_file_descriptor_set(kernel_proto::FILE_DESCRIPTOR_SET)
            .map_err(|e| Failure::other(format!("kernel-proto's descriptor set: {e}")))?;
        for path in descriptor_sets {
            let path = path.as_ref();
            let bytes = std::fs::read(path)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
            pool.decode_file_descriptor_set(bytes.as_slice())
                .map_err(|e| {
                    Failure::usage(format!(
                        "{} is not a usable FileDescriptorSet: {e}",
                        path.display()
                    ))
                })?;
        }
        Ok(Types { pool })
    }

    /// The message type of full name `name` (`kernel.examples.v1.Greeted`; a leading `.` is
    /// ignored).
    ///
    /// # Errors
    /// [`Failure::Usage`] naming the type, and the full names that end in it if there are any
    /// (`Greeted` suggests `kernel.examples.v1.Greeted`).
    pub(crate) fn message(&self, name: &str) -> Result<MessageDescriptor, Failure> {
        let name = name.trim_start_matches('.');
        if let Some(message) = self.pool.get_message_by_name(name) {
            return Ok(message);
        }
        let suffix = format!(".{name}");
        let mut near: Vec<String> = self
            .pool
            .all_messages()
            .map(|m| m.full_name().to_owned())
            .filter(|full| full.ends_with(&suffix))
            .collect();
        near.sort();
        near.truncate(5);
        let hint = if near.is_empty() {
            " (add the team's types with --descriptor-set FILE)".to_owned()
        } else {
            format!("; did you mean {}?", near.join(" or "))
        };
        Err(Failure::usage(format!(
            "no message type {name:?} in the descriptor sets{hint}"
        )))
    }

    /// The message type of full name `name`, if a descriptor set has it: for names the
    /// tool did not choose (a subscriber's announcement).
    pub(crate) fn get(&self, name: &str) -> Option<MessageDescriptor> {
        self.pool.get_message_by_name(name.trim_start_matches('.'))
    }

    /// The message type the platform itself publishes on `topic`, if it is one of the
    /// platform's topics (`kernel_server::platform_topics`: monitoring, sign-outs).
    pub(crate) fn of_platform_topic(&self, topic: &str) -> Option<MessageDescriptor> {
        kernel_server::platform_topic(topic).and_then(|row| self.get(row.message_type))
    }
}

/// `payload` decoded as a protobuf `message`, in the proto3 JSON mapping (camelCase names,
/// enums by name, 64-bit integers as strings), as the platform's own JSON is.
///
/// # Errors
/// Why the bytes are not such a message, as text.
pub(crate) fn decode(
    message: &MessageDescriptor,
    payload: &[u8],
) -> Result<serde_json::Value, String> {
    let decoded = DynamicMessage::decode(message.clone(), payload)
        .map_err(|e| format!("not a {}: {e}", message.full_name()))?;
    serde_json::to_value(&decoded).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn a_platform_message_decodes_by_name_to_proto3_json() {
        let types = Types::load(&[] as &[&Path]).unwrap_or_else(|e| panic!("{e}"));
        let greeted = kernel_proto::examples::Greeted {
            name: "ada".into(),
            count: 3,
        };
        let message = types
            .message("kernel.examples.v1.Greeted")
            .unwrap_or_else(|e| panic!("{e}"));
        let json = decode(&message, &greeted.encode_to_vec()).unwrap_or_else(|e| panic!("{e}"));
        // The same JSON the generated (pbjson) type writes.
        assert_eq!(json, serde_json::to_value(&greeted).unwrap_or_default());
        assert_eq!(json, serde_json::json!({"name": "ada", "count": "3"}));
    }

    #[test]
    fn an_unknown_name_is_a_usage_error_with_suggestions() {
        let types = Types::load(&[] as &[&Path]).unwrap_or_else(|e| panic!("{e}"));
        let Err(failure) = types.message("Greeted") else {
            panic!("a short name was taken");
        };
        assert_eq!(failure.exit_code(), crate::failure::EXIT_USAGE);
        assert!(failure.to_string().contains("kernel.examples.v1.Greeted"));
        let Err(failure) = types.message("team.v1.Nothing") else {
            panic!("an unknown name was taken");
        };
        assert!(failure.to_string().contains("--descriptor-set"));
    }

    #[test]
    fn platform_topics_have_their_types() {
        let types = Types::load(&[] as &[&Path]).unwrap_or_else(|e| panic!("{e}"));
        let name = |topic: &str| {
            types
                .of_platform_topic(topic)
                .map(|m| m.full_name().to_owned())
        };
        assert_eq!(
            name("kernel.monitor.healthcheck").as_deref(),
            Some("kernel.platform.v1.HealthCheckEvent")
        );
        assert_eq!(
            name("kernel.login.signedout").as_deref(),
            Some("kernel.login.v1.SignedOut")
        );
        // Every row of the server's table is a type the tool can decode.
        for row in kernel_server::platform_topics() {
            assert!(types.get(row.message_type).is_some(), "{row:?}");
        }
        assert!(name("com.example.greeted").is_none());
    }
}
