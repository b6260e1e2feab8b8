//! [`RawJson`]: any JSON value as a request or response, so that `kernel call` needs no
//! generated code.

use serde::{Deserialize, Serialize};

/// A JSON document carried as it is. It satisfies [`kernel_transport::Message`] so that the
/// client's typed call path (deadline, session, error replies) carries it; it only makes
/// sense with the JSON content type (`Call::json`): in protobuf it encodes to nothing and
/// decodes to `null`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct RawJson(pub(crate) serde_json::Value);

impl prost::Message for RawJson {
    fn encode_raw(&self, _buf: &mut impl bytes::BufMut) {}

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        0
    }

    fn clear(&mut self) {
        self.0 = serde_json::Value::Null;
    }
}

impl prost::Name for RawJson {
    const NAME: &'static str = "RawJson";
    const PACKAGE: &'static str = "kernel.cli";
}

#[cfg(test)]
mod tests {
    use kernel_transport::{ContentType, codec};

    use super::*;

    #[test]
    fn json_passes_through_unchanged() {
        let value = serde_json::json!({"name": "ada", "n": [1, 2], "deep": {"x": null}});
        let bytes = codec::encode(ContentType::Json, &RawJson(value.clone())).unwrap_or_default();
        let back: RawJson = codec::decode(ContentType::Json, &bytes).unwrap_or_default();
        assert_eq!(back.0, value);
    }
}
