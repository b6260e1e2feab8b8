//! The recorded v1 messages (`tests/fixtures/wire-v1/`) and the shape of a delivery.

use std::collections::{BTreeMap, BTreeSet};

use kernel_transport::{ContentType, codec};
use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use serde_json::Value;

/// One recorded message (see `tests/fixtures/wire-v1/README.md`).
#[derive(Clone, Debug)]
pub(crate) struct Fixture {
    pub(crate) name: &'static str,
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
    pub(crate) mandatory: bool,
    /// AMQP basic properties by their AMQP names; `delivery_mode` is a number, the rest text.
    pub(crate) properties: BTreeMap<String, Value>,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) payload: Vec<u8>,
    /// The payload in the protobuf JSON mapping, for protobuf messages.
    pub(crate) json: Option<Value>,
}

pub(crate) fn fixture(name: &'static str) -> Fixture {
    let path = format!(
        "{}/tests/fixtures/wire-v1/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let text = |value: &Value| {
        value
            .as_str()
            .unwrap_or_else(|| panic!("{path}: {value}"))
            .to_owned()
    };
    let object = |key: &str| {
        file[key]
            .as_object()
            .unwrap_or_else(|| panic!("{path}: {key}"))
    };
    Fixture {
        name,
        exchange: text(&file["exchange"]),
        routing_key: text(&file["routing_key"]),
        mandatory: file["mandatory"].as_bool().unwrap(),
        properties: object("properties")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        headers: object("headers")
            .iter()
            .map(|(k, v)| (k.clone(), text(v)))
            .collect(),
        payload: from_hex(&text(&file["payload"]["hex"])),
        json: file["payload"].get("json").cloned(),
    }
}

fn from_hex(hex: &str) -> Vec<u8> {
    assert_eq!(hex.len() % 2, 0, "hex of odd length");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

impl Fixture {
    pub(crate) fn set_property(&mut self, name: &str, value: &str) {
        assert!(
            self.properties.contains_key(name),
            "{}: no {name}",
            self.name
        );
        self.properties.insert(name.into(), Value::from(value));
    }

    pub(crate) fn set_header(&mut self, name: &str, value: &str) {
        self.headers.insert(name.into(), value.into());
    }

    /// The properties and headers to publish it with.
    pub(crate) fn basic_properties(&self) -> BasicProperties {
        let mut headers = FieldTable::default();
        for (name, value) in &self.headers {
            headers.insert(
                name.as_str().into(),
                AMQPValue::LongString(value.as_str().into()),
            );
        }
        let mut properties = BasicProperties::default().with_headers(headers);
        for (name, value) in &self.properties {
            let text = || value.as_str().unwrap().into();
            properties = match name.as_str() {
                "content_type" => properties.with_content_type(text()),
                "message_id" => properties.with_message_id(text()),
                "correlation_id" => properties.with_correlation_id(text()),
                "reply_to" => properties.with_reply_to(text()),
                "expiration" => properties.with_expiration(text()),
                "delivery_mode" => {
                    properties.with_delivery_mode(u8::try_from(value.as_u64().unwrap()).unwrap())
                }
                other => panic!("{}: property {other} is not in wire v1", self.name),
            };
        }
        properties
    }

    /// The shape recorded: what a v1 peer sends, without `user_id`.
    pub(crate) fn shape(&self) -> Shape {
        Shape {
            properties: self.properties.keys().cloned().collect(),
            headers: self.headers.keys().cloned().collect(),
            headers_not_long_strings: BTreeSet::new(),
            message_type: self.headers.get("messageType").cloned().unwrap_or_default(),
            content_type: self.properties["content_type"].as_str().unwrap().to_owned(),
            delivery_mode: self.properties["delivery_mode"].as_u64().unwrap(),
            user_id: String::new(),
        }
    }

    /// The shape the current kernel sends: the recorded one plus `user_id`, the broker user
    /// of the kernel's test connection (`docs/wire.md` §4.1; v1 receivers ignore it).
    pub(crate) fn shape_from_kernel(&self) -> Shape {
        let mut shape = self.shape();
        assert!(
            !shape.properties.contains("user_id"),
            "{}: the recorded v1 message has a user_id",
            self.name
        );
        shape.properties.insert("user_id".into());
        shape.user_id = kernel_user();
        shape
    }

    /// The payload decoded as `M`, checked against the fixture's JSON rendering of it.
    pub(crate) fn message<M: kernel_transport::Message + PartialEq + std::fmt::Debug>(&self) -> M {
        let decoded = codec::decode::<M>(ContentType::Protobuf, &self.payload).unwrap();
        let json = self.json.as_ref().unwrap().to_string();
        let from_json = codec::decode::<M>(ContentType::Json, json.as_bytes()).unwrap();
        assert_eq!(decoded, from_json, "{}: hex and json disagree", self.name);
        decoded
    }
}

/// What must not change between versions for a message of one kind: which properties and
/// headers it carries, and the values that say what it is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) properties: BTreeSet<String>,
    pub(crate) headers: BTreeSet<String>,
    /// Wire v1 sends every header value as an AMQP long string: none are listed here.
    pub(crate) headers_not_long_strings: BTreeSet<String>,
    pub(crate) message_type: String,
    pub(crate) content_type: String,
    pub(crate) delivery_mode: u64,
    /// The `user_id` property: the publisher's broker user; empty when absent.
    pub(crate) user_id: String,
}

/// The broker user the kernel processes of these tests log in as (`KERNEL_AMQP_URL`'s).
pub(crate) fn kernel_user() -> String {
    let url = kernel_testkit::engine_address("KERNEL_AMQP_URL");
    kernel_amqp::ConnectOptions::from_url(&url)
        .unwrap()
        .user()
        .to_owned()
}

impl Shape {
    pub(crate) fn of(delivery: &Delivery) -> Shape {
        let p = &delivery.properties;
        let present = [
            ("content_type", p.content_type().is_some()),
            ("content_encoding", p.content_encoding().is_some()),
            ("delivery_mode", p.delivery_mode().is_some()),
            ("priority", p.priority().is_some()),
            ("correlation_id", p.correlation_id().is_some()),
            ("reply_to", p.reply_to().is_some()),
            ("expiration", p.expiration().is_some()),
            ("message_id", p.message_id().is_some()),
            ("timestamp", p.timestamp().is_some()),
            ("type", p.kind().is_some()),
            ("user_id", p.user_id().is_some()),
            ("app_id", p.app_id().is_some()),
            ("cluster_id", p.cluster_id().is_some()),
        ];
        let headers = header_table(delivery);
        let names = |keep: fn(&AMQPValue) -> bool| {
            headers
                .iter()
                .filter(|(_, value)| keep(value))
                .map(|(name, _)| name.as_str().to_owned())
                .collect()
        };
        Shape {
            properties: present
                .into_iter()
                .filter(|(_, present)| *present)
                .map(|(name, _)| name.to_owned())
                .collect(),
            headers: names(|_| true),
            headers_not_long_strings: names(|value| !matches!(value, AMQPValue::LongString(_))),
            message_type: header(delivery, "messageType"),
            content_type: p
                .content_type()
                .as_ref()
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            delivery_mode: p.delivery_mode().map_or(0, u64::from),
            user_id: property(p.user_id()),
        }
    }
}

/// The delivery's headers; none if it has no header table.
fn header_table(delivery: &Delivery) -> BTreeMap<ShortString, AMQPValue> {
    delivery
        .properties
        .headers()
        .as_ref()
        .map(|table| table.inner().clone())
        .unwrap_or_default()
}

pub(crate) fn header(delivery: &Delivery, name: &str) -> String {
    match header_table(delivery).get(name) {
        Some(AMQPValue::LongString(value)) => String::from_utf8_lossy(value.as_bytes()).into(),
        _ => String::new(),
    }
}

pub(crate) fn property(value: &Option<ShortString>) -> String {
    value
        .as_ref()
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default()
}
