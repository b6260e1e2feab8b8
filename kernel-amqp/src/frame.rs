//! Frames and methods: the bytes on the socket.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::Error;
use crate::types::{DecodeError, FieldTable, Reader, ShortString, Writer};

pub(crate) const FRAME_METHOD: u8 = 1;
pub(crate) const FRAME_HEADER: u8 = 2;
pub(crate) const FRAME_BODY: u8 = 3;
pub(crate) const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xCE;
/// Type, channel, size before the payload; the end octet after it.
pub(crate) const FRAME_OVERHEAD: usize = 8;

/// The protocol header a client opens with.
pub(crate) const PROTOCOL_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";

/// One frame read from the socket.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) kind: u8,
    pub(crate) channel: u16,
    pub(crate) payload: Bytes,
}

/// A content header larger than the header limit: only its class, weight and body size (12
/// bytes, followed here by the header's size as a u32) are kept, the rest is skipped as it
/// arrives. Not a frame type on the wire.
pub(crate) const FRAME_HEADER_TOO_LARGE: u8 = 0xF2;
/// The bytes of a content header before its property flags.
const HEADER_BASE: usize = 12;

/// Splits the byte stream into frames no larger than the negotiated maximum. A content header
/// may be larger (RabbitMQ sends a header as one frame whatever its size, when a message came
/// in through another path than AMQP 0-9-1): up to `header_max` it is read whole, beyond it is
/// reported as [`FRAME_HEADER_TOO_LARGE`] and skipped, so the stream stays in step.
#[derive(Debug)]
pub(crate) struct FrameCodec {
    pub(crate) frame_max: usize,
    pub(crate) header_max: usize,
    /// Bytes of an oversized header (and its end octet) still to skip.
    pub(crate) skipping: usize,
}

impl FrameCodec {
    pub(crate) fn new(frame_max: usize, header_max: usize) -> Self {
        FrameCodec {
            frame_max,
            header_max,
            skipping: 0,
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        if self.skipping > 0 {
            let n = self.skipping.min(src.len());
            src.advance(n);
            self.skipping -= n;
            if self.skipping > 0 {
                return Ok(None);
            }
        }
        if src.len() < 7 {
            return Ok(None);
        }
        let size = u32::from_be_bytes([src[3], src[4], src[5], src[6]]) as usize;
        let header = src[0] == FRAME_HEADER;
        if header && size + FRAME_OVERHEAD > self.header_max.max(self.frame_max) {
            if size < HEADER_BASE {
                return Err(Error::Protocol("a content header too short".into()));
            }
            if src.len() < 7 + HEADER_BASE {
                return Ok(None);
            }
            src.advance(1);
            let channel = src.get_u16();
            src.advance(4);
            // The header's first 12 bytes, then its size.
            let mut payload = BytesMut::from(&src.split_to(HEADER_BASE)[..]);
            payload.put_u32(size as u32);
            let payload = payload.freeze();
            self.skipping = size - HEADER_BASE + 1;
            return Ok(Some(Frame {
                kind: FRAME_HEADER_TOO_LARGE,
                channel,
                payload,
            }));
        }
        if !header && size + FRAME_OVERHEAD > self.frame_max {
            return Err(Error::Protocol(format!(
                "the broker sent a frame of {size} bytes, over the negotiated {}",
                self.frame_max
            )));
        }
        if src.len() < size + FRAME_OVERHEAD {
            src.reserve(size + FRAME_OVERHEAD - src.len());
            return Ok(None);
        }
        let kind = src.get_u8();
        let channel = src.get_u16();
        src.advance(4);
        let payload = src.split_to(size).freeze();
        if src.get_u8() != FRAME_END {
            return Err(Error::Protocol("a frame did not end with 0xCE".into()));
        }
        Ok(Some(Frame {
            kind,
            channel,
            payload,
        }))
    }
}

/// Appends one frame to `out`.
pub(crate) fn put_frame(out: &mut BytesMut, kind: u8, channel: u16, payload: &[u8]) {
    out.reserve(payload.len() + FRAME_OVERHEAD);
    out.put_u8(kind);
    out.put_u16(channel);
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    out.put_u8(FRAME_END);
}

/// Appends a heartbeat frame to `out`.
pub(crate) fn put_heartbeat(out: &mut BytesMut) {
    put_frame(out, FRAME_HEARTBEAT, 0, &[]);
}

/// The `connection.close` / `channel.close` arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Close {
    pub(crate) code: u16,
    pub(crate) text: ShortString,
    pub(crate) class_id: u16,
    pub(crate) method_id: u16,
}

/// The methods this client sends or understands.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Method {
    ConnectionStart {
        mechanisms: Bytes,
    },
    ConnectionStartOk {
        client_properties: FieldTable,
        mechanism: &'static str,
        response: Bytes,
    },
    ConnectionSecure,
    ConnectionTune {
        channel_max: u16,
        frame_max: u32,
        heartbeat: u16,
    },
    ConnectionTuneOk {
        channel_max: u16,
        frame_max: u32,
        heartbeat: u16,
    },
    ConnectionOpen {
        vhost: String,
    },
    ConnectionOpenOk,
    ConnectionClose(Close),
    ConnectionCloseOk,
    ConnectionBlocked {
        reason: ShortString,
    },
    ConnectionUnblocked,
    ChannelOpen,
    ChannelOpenOk,
    ChannelFlow {
        active: bool,
    },
    ChannelFlowOk {
        active: bool,
    },
    ChannelClose(Close),
    ChannelCloseOk,
    ExchangeDeclare {
        name: String,
        kind: &'static str,
        durable: bool,
        arguments: FieldTable,
    },
    ExchangeDeclareOk,
    QueueDeclare {
        name: String,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        arguments: FieldTable,
    },
    QueueDeclareOk {
        name: ShortString,
        message_count: u32,
        consumer_count: u32,
    },
    QueueBind {
        queue: String,
        exchange: String,
        routing_key: String,
    },
    QueueBindOk,
    QueueDelete {
        queue: String,
    },
    QueueDeleteOk {
        message_count: u32,
    },
    BasicQos {
        prefetch_count: u16,
    },
    BasicQosOk,
    BasicConsume {
        queue: String,
        tag: String,
        no_ack: bool,
    },
    BasicConsumeOk {
        tag: ShortString,
    },
    BasicCancel {
        tag: ShortString,
        no_wait: bool,
    },
    BasicCancelOk {
        tag: ShortString,
    },
    BasicPublish {
        exchange: String,
        routing_key: String,
        mandatory: bool,
    },
    BasicReturn {
        code: u16,
        text: ShortString,
        exchange: ShortString,
        routing_key: ShortString,
    },
    BasicDeliver {
        tag: ShortString,
        delivery_tag: u64,
        redelivered: bool,
        exchange: ShortString,
        routing_key: ShortString,
    },
    BasicAck {
        delivery_tag: u64,
        multiple: bool,
    },
    BasicReject {
        delivery_tag: u64,
        requeue: bool,
    },
    BasicNack {
        delivery_tag: u64,
        multiple: bool,
        requeue: bool,
    },
    ConfirmSelect,
    ConfirmSelectOk,
    /// A method this client has no use for; ignored.
    Other {
        class: u16,
        method: u16,
    },
}

impl Method {
    /// The (class, method) ids.
    pub(crate) fn ids(&self) -> (u16, u16) {
        use Method::*;
        match self {
            ConnectionStart { .. } => (10, 10),
            ConnectionStartOk { .. } => (10, 11),
            ConnectionSecure => (10, 20),
            ConnectionTune { .. } => (10, 30),
            ConnectionTuneOk { .. } => (10, 31),
            ConnectionOpen { .. } => (10, 40),
            ConnectionOpenOk => (10, 41),
            ConnectionClose(_) => (10, 50),
            ConnectionCloseOk => (10, 51),
            ConnectionBlocked { .. } => (10, 60),
            ConnectionUnblocked => (10, 61),
            ChannelOpen => (20, 10),
            ChannelOpenOk => (20, 11),
            ChannelFlow { .. } => (20, 20),
            ChannelFlowOk { .. } => (20, 21),
            ChannelClose(_) => (20, 40),
            ChannelCloseOk => (20, 41),
            ExchangeDeclare { .. } => (40, 10),
            ExchangeDeclareOk => (40, 11),
            QueueDeclare { .. } => (50, 10),
            QueueDeclareOk { .. } => (50, 11),
            QueueBind { .. } => (50, 20),
            QueueBindOk => (50, 21),
            QueueDelete { .. } => (50, 40),
            QueueDeleteOk { .. } => (50, 41),
            BasicQos { .. } => (60, 10),
            BasicQosOk => (60, 11),
            BasicConsume { .. } => (60, 20),
            BasicConsumeOk { .. } => (60, 21),
            BasicCancel { .. } => (60, 30),
            BasicCancelOk { .. } => (60, 31),
            BasicPublish { .. } => (60, 40),
            BasicReturn { .. } => (60, 50),
            BasicDeliver { .. } => (60, 60),
            BasicAck { .. } => (60, 80),
            BasicReject { .. } => (60, 90),
            BasicNack { .. } => (60, 120),
            ConfirmSelect => (85, 10),
            ConfirmSelectOk => (85, 11),
            Other { class, method } => (*class, *method),
        }
    }

    /// Encodes the method as a frame payload.
    pub(crate) fn encode(&self, buf: &mut BytesMut) -> Result<(), Error> {
        use Method::*;
        let (class, method) = self.ids();
        let mut w = Writer(buf);
        w.u16(class);
        w.u16(method);
        let bits = |flags: &[bool]| {
            flags
                .iter()
                .enumerate()
                .fold(0u8, |acc, (i, &set)| acc | (u8::from(set) << i))
        };
        match self {
            ConnectionStartOk {
                client_properties,
                mechanism,
                response,
            } => {
                w.table(client_properties)?;
                w.short_str(mechanism)?;
                w.long_bytes(response)?;
                w.short_str("en_US")?;
            }
            ConnectionTuneOk {
                channel_max,
                frame_max,
                heartbeat,
            }
            | ConnectionTune {
                channel_max,
                frame_max,
                heartbeat,
            } => {
                w.u16(*channel_max);
                w.u32(*frame_max);
                w.u16(*heartbeat);
            }
            ConnectionOpen { vhost } => {
                w.short_str(vhost)?;
                w.short_str("")?;
                w.u8(0);
            }
            ConnectionClose(close) | ChannelClose(close) => {
                w.u16(close.code);
                w.short_bytes(close.text.as_bytes())?;
                w.u16(close.class_id);
                w.u16(close.method_id);
            }
            ChannelOpen => w.short_str("")?,
            ChannelFlowOk { active } => w.u8(u8::from(*active)),
            ExchangeDeclare {
                name,
                kind,
                durable,
                arguments,
            } => {
                w.u16(0);
                w.short_str(name)?;
                w.short_str(kind)?;
                w.u8(bits(&[false, *durable, false, false, false]));
                w.table(arguments)?;
            }
            QueueDeclare {
                name,
                durable,
                exclusive,
                auto_delete,
                arguments,
            } => {
                w.u16(0);
                w.short_str(name)?;
                w.u8(bits(&[false, *durable, *exclusive, *auto_delete, false]));
                w.table(arguments)?;
            }
            QueueBind {
                queue,
                exchange,
                routing_key,
            } => {
                w.u16(0);
                w.short_str(queue)?;
                w.short_str(exchange)?;
                w.short_str(routing_key)?;
                w.u8(0);
                w.table(&FieldTable::new())?;
            }
            QueueDelete { queue } => {
                w.u16(0);
                w.short_str(queue)?;
                w.u8(0);
            }
            BasicQos { prefetch_count } => {
                w.u32(0);
                w.u16(*prefetch_count);
                w.u8(0);
            }
            BasicConsume { queue, tag, no_ack } => {
                w.u16(0);
                w.short_str(queue)?;
                w.short_str(tag)?;
                w.u8(bits(&[false, *no_ack, false, false]));
                w.table(&FieldTable::new())?;
            }
            BasicCancel { tag, no_wait } => {
                w.short_bytes(tag.as_bytes())?;
                w.u8(u8::from(*no_wait));
            }
            BasicPublish {
                exchange,
                routing_key,
                mandatory,
            } => {
                w.u16(0);
                w.short_str(exchange)?;
                w.short_str(routing_key)?;
                w.u8(bits(&[*mandatory, false]));
            }
            BasicAck {
                delivery_tag,
                multiple,
            } => {
                w.u64(*delivery_tag);
                w.u8(u8::from(*multiple));
            }
            BasicReject {
                delivery_tag,
                requeue,
            } => {
                w.u64(*delivery_tag);
                w.u8(u8::from(*requeue));
            }
            BasicNack {
                delivery_tag,
                multiple,
                requeue,
            } => {
                w.u64(*delivery_tag);
                w.u8(bits(&[*multiple, *requeue]));
            }
            ConfirmSelect => w.u8(0),
            ConnectionCloseOk | ChannelCloseOk => {}
            other => {
                return Err(Error::Protocol(format!(
                    "this client does not send {:?}",
                    other.ids()
                )));
            }
        }
        Ok(())
    }

    /// Decodes a method frame payload sent by the broker.
    pub(crate) fn decode(payload: Bytes, max_depth: usize) -> Result<Method, DecodeError> {
        use Method::*;
        let mut r = Reader::new(payload, max_depth);
        let class = r.u16()?;
        let method = r.u16()?;
        let close = |r: &mut Reader| -> Result<Close, DecodeError> {
            Ok(Close {
                code: r.u16()?,
                text: r.short_string()?,
                class_id: r.u16()?,
                method_id: r.u16()?,
            })
        };
        Ok(match (class, method) {
            (10, 10) => {
                let _major = r.u8()?;
                let _minor = r.u8()?;
                let _server_properties = r.table()?;
                ConnectionStart {
                    mechanisms: r.long_string()?,
                }
            }
            (10, 20) => ConnectionSecure,
            (10, 30) => ConnectionTune {
                channel_max: r.u16()?,
                frame_max: r.u32()?,
                heartbeat: r.u16()?,
            },
            (10, 41) => ConnectionOpenOk,
            (10, 50) => ConnectionClose(close(&mut r)?),
            (10, 51) => ConnectionCloseOk,
            (10, 60) => ConnectionBlocked {
                reason: r.short_string().unwrap_or_default(),
            },
            (10, 61) => ConnectionUnblocked,
            (20, 11) => ChannelOpenOk,
            (20, 20) => ChannelFlow {
                active: r.u8()? & 1 != 0,
            },
            (20, 40) => ChannelClose(close(&mut r)?),
            (20, 41) => ChannelCloseOk,
            (40, 11) => ExchangeDeclareOk,
            (50, 11) => QueueDeclareOk {
                name: r.short_string()?,
                message_count: r.u32()?,
                consumer_count: r.u32()?,
            },
            (50, 21) => QueueBindOk,
            (50, 41) => QueueDeleteOk {
                message_count: r.u32()?,
            },
            (60, 11) => BasicQosOk,
            (60, 21) => BasicConsumeOk {
                tag: r.short_string()?,
            },
            (60, 30) => BasicCancel {
                tag: r.short_string()?,
                no_wait: r.u8()? & 1 != 0,
            },
            (60, 31) => BasicCancelOk {
                tag: r.short_string()?,
            },
            (60, 50) => BasicReturn {
                code: r.u16()?,
                text: r.short_string()?,
                exchange: r.short_string()?,
                routing_key: r.short_string()?,
            },
            (60, 60) => BasicDeliver {
                tag: r.short_string()?,
                delivery_tag: r.u64()?,
                redelivered: r.u8()? & 1 != 0,
                exchange: r.short_string()?,
                routing_key: r.short_string()?,
            },
            (60, 80) => BasicAck {
                delivery_tag: r.u64()?,
                multiple: r.u8()? & 1 != 0,
            },
            (60, 120) => {
                let delivery_tag = r.u64()?;
                let bits = r.u8()?;
                BasicNack {
                    delivery_tag,
                    multiple: bits & 1 != 0,
                    requeue: bits & 2 != 0,
                }
            }
            (85, 11) => ConfirmSelectOk,
            (class, method) => Other { class, method },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_and_checked() {
        let mut out = BytesMut::new();
        put_frame(&mut out, FRAME_BODY, 3, b"abc");
        put_heartbeat(&mut out);
        let mut codec = FrameCodec::new(4096, 4096);
        let mut partial = out.split_to(5);
        assert!(codec.decode(&mut partial).expect("no error").is_none());
        partial.unsplit(out);
        let frame = codec.decode(&mut partial).expect("ok").expect("a frame");
        assert_eq!(
            (frame.kind, frame.channel, &frame.payload[..]),
            (3, 3, &b"abc"[..])
        );
        let frame = codec.decode(&mut partial).expect("ok").expect("a frame");
        assert_eq!(frame.kind, FRAME_HEARTBEAT);

        let mut bad = BytesMut::new();
        put_frame(&mut bad, FRAME_BODY, 1, b"x");
        let last = bad.len() - 1;
        bad[last] = 0;
        assert!(codec.decode(&mut bad).is_err());
        let mut huge = BytesMut::from(&[1u8, 0, 1, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(codec.decode(&mut huge).is_err());
    }

    #[test]
    fn a_header_over_the_limit_is_skipped_and_the_stream_stays_in_step() {
        let mut codec = FrameCodec::new(4096, 8192);
        let mut out = BytesMut::new();
        let mut header = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
        header.resize(20_000, 0xAA);
        put_frame(&mut out, FRAME_HEADER, 5, &header);
        put_frame(&mut out, FRAME_BODY, 5, b"abc");
        // Fed in small pieces, as a socket would.
        let mut src = BytesMut::new();
        let mut frames = Vec::new();
        for chunk in out.chunks(1000) {
            src.extend_from_slice(chunk);
            while let Some(frame) = codec.decode(&mut src).expect("in step") {
                frames.push(frame);
            }
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].kind, FRAME_HEADER_TOO_LARGE);
        assert_eq!(frames[0].channel, 5);
        assert_eq!(&frames[0].payload[..12], &header[..12]);
        assert_eq!(&frames[0].payload[12..], &20_000u32.to_be_bytes());
        assert_eq!(
            (frames[1].kind, &frames[1].payload[..]),
            (FRAME_BODY, &b"abc"[..])
        );
        // A header within the header limit but over frame_max is read whole.
        let mut out = BytesMut::new();
        put_frame(&mut out, FRAME_HEADER, 1, &header[..6000]);
        let frame = codec.decode(&mut out).expect("ok").expect("a frame");
        assert_eq!((frame.kind, frame.payload.len()), (FRAME_HEADER, 6000));
    }

    #[test]
    fn a_delivery_with_a_routing_key_that_is_not_utf8_decodes() {
        let mut buf = BytesMut::new();
        let mut w = Writer(&mut buf);
        w.u16(60);
        w.u16(60);
        w.short_str("ctag").expect("short");
        w.u64(9);
        w.u8(1);
        w.short_str("h2o").expect("short");
        w.short_bytes(&[0xff, 0xfe]).expect("short");
        let method = Method::decode(buf.freeze(), 8).expect("decodes");
        let Method::BasicDeliver {
            delivery_tag,
            redelivered,
            routing_key,
            ..
        } = method
        else {
            panic!("not a delivery: {method:?}");
        };
        assert_eq!((delivery_tag, redelivered), (9, true));
        assert_eq!(routing_key.as_bytes(), &[0xff, 0xfe]);
    }
}
