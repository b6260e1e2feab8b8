//! Conversion to and from the wire message [`PlatformError`].
//!
//! ```text
//! Error ──────────────► PlatformError
//!   kind                  type = H2's number for the kind, or UNKNOWN (0) when H2 has none
//!                         kind = the kind's canonical name, always ("OVERLOADED")
//!                         http_code = the kind's HTTP status, always
//!   code, description,    code, description, context: as they are
//!   context
//!   source                (not sent: it stays in the process that had it)
//!
//! PlatformError ──────► Error          (never fails: an error reply is always an Error)
//!   kind, if it is a known name; else
//!   type, if it is one of H2's 1..=7; else
//!   the kind whose status is http_code (400, 401, 403, 404, 409, 429, 504); else
//!   InternalServerError
//! ```
//!
//! Every `Error` survives `Error → PlatformError → Error` unchanged, except its in-process
//! source. An H2 peer, which knows only `type`, reads `Unauthorized` and the other kinds its
//! enum lacks as type 0 with the right HTTP status, exactly as H2 itself sent them.

use kernel_proto::platform::PlatformError;
use kernel_proto::platform::platform_error::ErrorType;

use crate::{Error, Kind};

/// H2's wire number for a kind, or `Unknown` for the kinds H2's enum cannot name.
fn error_type(kind: Kind) -> ErrorType {
    match kind {
        Kind::InternalServerError => ErrorType::InternalServerError,
        Kind::BadRequest => ErrorType::BadRequest,
        Kind::BadResponse => ErrorType::BadResponse,
        Kind::Timeout => ErrorType::Timeout,
        Kind::Forbidden => ErrorType::Forbidden,
        Kind::NotFound => ErrorType::NotFound,
        Kind::Conflict => ErrorType::Conflict,
        Kind::Unauthorized
        | Kind::CircuitBroken
        | Kind::Overloaded
        | Kind::NoRoute
        | Kind::ConnectionLost => ErrorType::Unknown,
    }
}

/// The kind H2's wire number names, if any.
fn kind_of_type(error_type: ErrorType) -> Option<Kind> {
    match error_type {
        ErrorType::Unknown => None,
        ErrorType::InternalServerError => Some(Kind::InternalServerError),
        ErrorType::BadRequest => Some(Kind::BadRequest),
        ErrorType::BadResponse => Some(Kind::BadResponse),
        ErrorType::Timeout => Some(Kind::Timeout),
        ErrorType::Forbidden => Some(Kind::Forbidden),
        ErrorType::NotFound => Some(Kind::NotFound),
        ErrorType::Conflict => Some(Kind::Conflict),
    }
}

/// The kind an HTTP status alone names without doubt, if any (503 is ambiguous, 500 means
/// internal error anyway).
fn kind_of_status(status: u32) -> Option<Kind> {
    match status {
        400 => Some(Kind::BadRequest),
        401 => Some(Kind::Unauthorized),
        403 => Some(Kind::Forbidden),
        404 => Some(Kind::NotFound),
        409 => Some(Kind::Conflict),
        429 => Some(Kind::Overloaded),
        504 => Some(Kind::Timeout),
        _ => None,
    }
}

impl From<&Error> for PlatformError {
    fn from(error: &Error) -> Self {
        PlatformError {
            r#type: error_type(error.kind()) as i32,
            code: error.code().to_owned(),
            description: error.description().to_owned(),
            http_code: u32::from(error.http_status()),
            context: error.context().to_vec(),
            kind: error.kind().as_str().to_owned(),
        }
    }
}

impl From<Error> for PlatformError {
    fn from(error: Error) -> Self {
        PlatformError::from(&error)
    }
}

impl From<PlatformError> for Error {
    /// Decodes an error reply. Never fails; see the [module docs](self) for how the kind is
    /// chosen when the message comes from a peer that does not name it.
    fn from(message: PlatformError) -> Self {
        let kind = message
            .kind
            .parse::<Kind>()
            .ok()
            .or_else(|| {
                ErrorType::try_from(message.r#type)
                    .ok()
                    .and_then(kind_of_type)
            })
            .or_else(|| kind_of_status(message.http_code))
            .unwrap_or(Kind::InternalServerError);
        message.context.into_iter().fold(
            Error::new(kind, message.code, message.description),
            Error::with_context,
        )
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn assert_same(a: &Error, b: &Error) {
        assert_eq!(a.kind(), b.kind());
        assert_eq!(a.code(), b.code());
        assert_eq!(a.description(), b.description());
        assert_eq!(a.context(), b.context());
    }

    #[test]
    fn every_kind_survives_a_round_trip_through_the_encoded_message() {
        for kind in Kind::ALL {
            let error = Error::new(kind, "com.example.svc.ep.cond", format!("{kind} happened"))
                .with_context("com.example.svc")
                .with_context("ep");
            let bytes = PlatformError::from(&error).encode_to_vec();
            let decoded = Error::from(PlatformError::decode(bytes.as_slice()).unwrap());
            assert_same(&decoded, &error);
        }
    }

    #[test]
    fn kinds_h2_lacks_travel_as_unknown_type_with_their_name_and_status() {
        let message = PlatformError::from(Error::unauthorized("kernel.auth.notsignedin", "no"));
        assert_eq!(message.r#type, ErrorType::Unknown as i32);
        assert_eq!(message.kind, "UNAUTHORIZED");
        assert_eq!(message.http_code, 401);

        let message = PlatformError::from(Error::not_found("c", "d"));
        assert_eq!(message.r#type, ErrorType::NotFound as i32);
        assert_eq!(message.http_code, 404);
    }

    #[test]
    fn an_h2_peer_without_kind_names_is_understood_by_type_then_status() {
        let h2 = |r#type: ErrorType, http_code| PlatformError {
            r#type: r#type as i32,
            code: "com.hailocab.service.foo.bar".into(),
            description: "from go".into(),
            http_code,
            context: vec![],
            kind: String::new(),
        };
        assert_eq!(
            Error::from(h2(ErrorType::Conflict, 409)).kind(),
            Kind::Conflict
        );
        // H2 sent UNAUTHORIZED as type 0 with status 401.
        assert_eq!(
            Error::from(h2(ErrorType::Unknown, 401)).kind(),
            Kind::Unauthorized
        );
        // H2 sent CIRCUIT_BROKEN as type 0 with status 500: nothing better than internal.
        assert_eq!(
            Error::from(h2(ErrorType::Unknown, 500)).kind(),
            Kind::InternalServerError
        );
    }

    #[test]
    fn unknown_names_and_numbers_fall_back_without_failing() {
        let future = PlatformError {
            r#type: 99,
            code: "kernel.future.thing".into(),
            description: "from a newer peer".into(),
            http_code: 418,
            context: vec!["x".into()],
            kind: "TEAPOT".into(),
        };
        let error = Error::from(future);
        assert_eq!(error.kind(), Kind::InternalServerError);
        assert_eq!(error.code(), "kernel.future.thing");
        assert_eq!(error.context(), ["x"]);
    }

    /// A newer peer's error with a kind this version does not know, as [`docs/wire.md`](https://github.com/kernel-platform/kernel/blob/main/docs/wire.md) §12
    /// says it must be sent: with H2's nearest `type`, or type 0, and its status.
    fn from_a_newer_peer(kind: &str, r#type: ErrorType, http_code: u32) -> PlatformError {
        PlatformError {
            r#type: r#type as i32,
            code: "kernel.future.cond".into(),
            description: "from a newer peer".into(),
            http_code,
            context: vec!["svc".into(), "ep".into()],
            kind: kind.into(),
        }
    }

    #[test]
    fn an_unknown_kind_falls_back_to_its_type_when_h2_can_name_it() {
        let message = from_a_newer_peer("PRECONDITION_FAILED", ErrorType::BadRequest, 412);
        let error = Error::from(message);
        assert_eq!(error.kind(), Kind::BadRequest);
        assert_eq!(error.code(), "kernel.future.cond");
        assert_eq!(error.context(), ["svc", "ep"]);
    }

    #[test]
    fn an_unknown_kind_without_a_type_falls_back_to_its_status() {
        for (status, kind) in [
            (400, Kind::BadRequest),
            (401, Kind::Unauthorized),
            (403, Kind::Forbidden),
            (404, Kind::NotFound),
            (409, Kind::Conflict),
            (429, Kind::Overloaded),
            (504, Kind::Timeout),
        ] {
            let message = from_a_newer_peer("SOMETHING_NEW", ErrorType::Unknown, status);
            assert_eq!(Error::from(message).kind(), kind, "status {status}");
        }
    }

    #[test]
    fn an_unknown_kind_with_an_ambiguous_or_missing_status_is_internal() {
        for status in [0, 418, 500, 502, 503] {
            let message = from_a_newer_peer("SOMETHING_NEW", ErrorType::Unknown, status);
            let error = Error::from(message);
            assert_eq!(error.kind(), Kind::InternalServerError, "status {status}");
            assert_eq!(error.code(), "kernel.future.cond", "the code is kept");
        }
    }

    #[test]
    fn a_type_wins_over_a_status_when_the_kind_is_unknown() {
        let message = from_a_newer_peer("SOMETHING_NEW", ErrorType::Conflict, 429);
        assert_eq!(Error::from(message).kind(), Kind::Conflict);
    }

    #[test]
    fn a_type_number_newer_than_h2s_enum_is_passed_over_for_the_status() {
        let mut message = from_a_newer_peer("SOMETHING_NEW", ErrorType::Unknown, 404);
        message.r#type = 8;
        assert_eq!(Error::from(message).kind(), Kind::NotFound);
    }

    #[test]
    fn kind_names_are_matched_exactly() {
        // A lowercase or padded name is not a known name: the type decides.
        for name in ["not_found", " NOT_FOUND", "NotFound"] {
            let message = from_a_newer_peer(name, ErrorType::Conflict, 404);
            assert_eq!(Error::from(message).kind(), Kind::Conflict, "{name:?}");
        }
    }

    #[test]
    fn a_known_kind_name_wins_over_a_contradicting_type() {
        let message = PlatformError {
            r#type: ErrorType::InternalServerError as i32,
            kind: "OVERLOADED".into(),
            http_code: 429,
            ..Default::default()
        };
        assert_eq!(Error::from(message).kind(), Kind::Overloaded);
    }
}
