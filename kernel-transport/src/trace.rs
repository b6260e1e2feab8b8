//! Trace ids: made by the first caller, carried by every request of the trace, in the
//! kernel's `traceID` header and in W3C Trace Context's `traceparent`.
//!
//! A kernel trace id is 32 lowercase hex digits, the W3C trace-id format, so the two headers
//! name the same trace and tools that speak W3C (OpenTelemetry collectors, proxies) follow it.
//! H2 peers may send any text as `traceID`; it is passed on as it is, with no `traceparent`.
//!
//! ```
//! use kernel_transport::trace;
//!
//! let id = trace::new_trace_id();
//! assert_eq!(id.len(), 32);
//! let parent = trace::traceparent(&id).expect("a W3C trace id");
//! assert_eq!(trace::trace_id_of(&parent), Some(id.as_str()));
//! assert_eq!(trace::traceparent("h2-style-trace"), None);
//! ```

/// The W3C Trace Context header: `00-<trace id>-<parent span id>-<flags>`.
pub const TRACEPARENT: &str = "traceparent";

/// A fresh trace id: 32 random lowercase hex digits, never all zero.
pub fn new_trace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The `traceparent` for a request of trace `trace_id` (sampled, with a fresh span id), if
/// `trace_id` is a W3C trace id (32 lowercase hex digits, not all zero).
pub fn traceparent(trace_id: &str) -> Option<String> {
    if !is_hex(trace_id, 32) {
        return None;
    }
    let mut digits = uuid::Uuid::encode_buffer();
    let span = uuid::Uuid::new_v4().simple().encode_lower(&mut digits);
    // Built in one allocation of the header's exact size (this runs for every call).
    let mut header = String::with_capacity(55);
    for part in ["00-", trace_id, "-", &span[..16], "-01"] {
        header.push_str(part);
    }
    Some(header)
}

/// The trace id of a well-formed version-00 `traceparent`, if it is one.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (version, trace_id, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let well_formed = version == "00"
        && parts.next().is_none()
        && is_hex(trace_id, 32)
        && is_hex(span, 16)
        && is_hex(flags, 2);
    well_formed.then_some(trace_id)
}

/// `text` is `len` lowercase hex digits, not all zero.
fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && text.bytes().any(|b| b != b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_traceparents_are_refused() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            trace_id_of(&format!("00-{id}-00f067aa0ba902b7-01")),
            Some(id)
        );
        for bad in [
            "",
            "00",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn fresh_ids_are_w3c_ids() {
        let id = new_trace_id();
        assert!(is_hex(&id, 32), "{id}");
        assert_ne!(new_trace_id(), id);
        let parent = traceparent(&id).unwrap();
        assert_eq!(trace_id_of(&parent), Some(id.as_str()));
    }
}
