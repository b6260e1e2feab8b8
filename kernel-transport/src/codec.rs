//! Encoding messages per [`ContentType`]: protobuf binary or the protobuf JSON mapping.

use bytes::Bytes;

use crate::ContentType;

/// A message the platform can carry: a prost message that knows its protobuf name
/// ([`prost::Name`], which prost-build's `enable_type_names` generates) and has the standard
/// protobuf JSON mapping through serde (as pbjson generates; see `kernel-proto`). The name is
/// what `jsonschema` and discovery announcements report for an endpoint's messages.
///
/// Implemented for every type that has those traits; there is nothing to implement by hand.
pub trait Message:
    prost::Message
    + prost::Name
    + Default
    + serde::Serialize
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<T> Message for T where
    T: prost::Message
        + prost::Name
        + Default
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// A payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Not valid protobuf for the expected message.
    #[error("invalid protobuf payload")]
    Protobuf(#[source] prost::DecodeError),
    /// Not valid JSON for the expected message.
    #[error("invalid JSON payload")]
    Json(#[source] serde_json::Error),
    /// The content type is not one the kernel speaks.
    #[error("unsupported content type")]
    UnsupportedContentType,
}

/// Encodes `message` as `content_type` says (unsupported means protobuf).
///
/// ```
/// use kernel_proto::platform::LoadedConfigResponse;
/// use kernel_transport::{codec, ContentType};
///
/// let message = LoadedConfigResponse { config: "{}".into() };
/// let json = codec::encode(ContentType::Json, &message).unwrap();
/// assert_eq!(&json[..], br#"{"config":"{}"}"#);
/// let back: LoadedConfigResponse = codec::decode(ContentType::Json, &json).unwrap();
/// assert_eq!(back, message);
/// ```
///
/// # Errors
/// [`CodecError::Json`] if serde fails to serialize, which generated messages never do.
pub fn encode<M: Message>(content_type: ContentType, message: &M) -> Result<Bytes, CodecError> {
    match content_type {
        ContentType::Protobuf | ContentType::Unsupported => Ok(message.encode_to_vec().into()),
        ContentType::Json => serde_json::to_vec(message)
            .map(Bytes::from)
            .map_err(CodecError::Json),
    }
}

/// Decodes a payload encoded as `content_type` says.
///
/// # Errors
/// [`CodecError::Protobuf`] or [`CodecError::Json`] if the payload is not a valid `M`;
/// [`CodecError::UnsupportedContentType`] for [`ContentType::Unsupported`].
pub fn decode<M: Message>(content_type: ContentType, payload: &[u8]) -> Result<M, CodecError> {
    match content_type {
        ContentType::Protobuf => M::decode(payload).map_err(CodecError::Protobuf),
        ContentType::Json => serde_json::from_slice(payload).map_err(CodecError::Json),
        ContentType::Unsupported => Err(CodecError::UnsupportedContentType),
    }
}

#[cfg(test)]
mod tests {
    use kernel_proto::platform::{HealthCheck, HealthStatus};

    use super::*;

    #[test]
    fn both_encodings_round_trip() {
        let check = HealthCheck {
            id: "kernel.resource.capacity".into(),
            status: HealthStatus::Unhealthy as i32,
            ..Default::default()
        };
        for content_type in [ContentType::Protobuf, ContentType::Json] {
            let bytes = encode(content_type, &check).unwrap();
            assert_eq!(decode::<HealthCheck>(content_type, &bytes).unwrap(), check);
        }
    }

    #[test]
    fn garbage_is_a_typed_error_never_a_panic() {
        assert!(matches!(
            decode::<HealthCheck>(ContentType::Protobuf, &[0xff, 0xff, 0xff]),
            Err(CodecError::Protobuf(_))
        ));
        assert!(matches!(
            decode::<HealthCheck>(ContentType::Json, b"{not json"),
            Err(CodecError::Json(_))
        ));
        assert!(matches!(
            decode::<HealthCheck>(ContentType::Unsupported, b""),
            Err(CodecError::UnsupportedContentType)
        ));
    }
}
