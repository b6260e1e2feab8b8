//! [`Kind`]: what sort of failure an [`Error`](crate::Error) is, and what follows from it.

use std::fmt;
use std::str::FromStr;

/// What sort of failure an [`Error`](crate::Error) is.
///
/// Callers match on the kind; everything the platform decides about a failure (its HTTP status,
/// whether a client retries it, whether it counts against a circuit breaker) is decided here, on
/// the kind, and nowhere else.
///
/// | kind | HTTP | retryable | trips breaker | meaning |
/// |---|---|---|---|---|
/// | `InternalServerError` | 500 | no | yes | the server failed (a bug, a panic, a broken dependency) |
/// | `BadRequest` | 400 | no | no | the request was malformed or invalid |
/// | `Unauthorized` | 401 | no | no | no valid session where one is needed |
/// | `Forbidden` | 403 | no | no | the caller's session lacks the role |
/// | `NotFound` | 404 | no | no | the thing asked for does not exist |
/// | `Conflict` | 409 | no | no | the request conflicts with the current state |
/// | `BadResponse` | 500 | no | no | a reply could not be decoded or had the wrong type |
/// | `Timeout` | 504 | yes | yes | no reply within the (attempt's) deadline |
/// | `CircuitBroken` | 503 | no | no | the client's breaker for the endpoint is open |
/// | `Overloaded` | 429 | yes | no | the server shed the request: the caller's share is used up |
/// | `NoRoute` | 503 | yes | no | no queue serves the service (nobody is running it) |
/// | `ConnectionLost` | 503 | yes | no | the connection to the broker dropped before the reply |
///
/// Retryable kinds are the ones where another attempt, perhaps on another instance, can succeed.
/// A client retries them when it observes them itself (no answer in time, no route, a dropped
/// connection). An error reply is an answer and is not retried, whatever its kind, except
/// `Overloaded`: the server saying that it shed the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kind {
    /// The server failed: a bug, a panic, a dependency that is down.
    InternalServerError,
    /// The request was malformed (undecodable payload) or invalid (bad field values).
    BadRequest,
    /// The request needs a valid session and has none (missing, expired or forged token).
    Unauthorized,
    /// The caller is known but lacks the role the endpoint requires.
    Forbidden,
    /// The thing asked for does not exist (also: an unknown endpoint).
    NotFound,
    /// The request conflicts with the current state (a duplicate, a stale version).
    Conflict,
    /// A reply could not be decoded, or was not of the expected type.
    BadResponse,
    /// No reply arrived before the deadline.
    Timeout,
    /// The client's circuit breaker for the endpoint is open; no request was sent.
    CircuitBroken,
    /// The server shed the request because the caller's share of its capacity is used up.
    Overloaded,
    /// No queue is bound for the service: nobody is serving it right now.
    NoRoute,
    /// The connection to the broker dropped while the call was in flight.
    ConnectionLost,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 12] = [
        Kind::InternalServerError,
        Kind::BadRequest,
        Kind::Unauthorized,
        Kind::Forbidden,
        Kind::NotFound,
        Kind::Conflict,
        Kind::BadResponse,
        Kind::Timeout,
        Kind::CircuitBroken,
        Kind::Overloaded,
        Kind::NoRoute,
        Kind::ConnectionLost,
    ];

    /// The HTTP status a gateway answers with for this kind.
    ///
    /// ```
    /// use kernel_errors::Kind;
    /// assert_eq!(Kind::NotFound.http_status(), 404);
    /// assert_eq!(Kind::Timeout.http_status(), 504);
    /// ```
    pub const fn http_status(self) -> u16 {
        match self {
            Kind::InternalServerError | Kind::BadResponse => 500,
            Kind::BadRequest => 400,
            Kind::Unauthorized => 401,
            Kind::Forbidden => 403,
            Kind::NotFound => 404,
            Kind::Conflict => 409,
            Kind::Timeout => 504,
            Kind::Overloaded => 429,
            Kind::CircuitBroken | Kind::NoRoute | Kind::ConnectionLost => 503,
        }
    }

    /// Whether a client may try again (on this or another instance) within the deadline.
    ///
    /// True for timeouts, overload, a lost connection and a missing route: transient conditions
    /// in which the failed attempt did no harm the server cannot recognise (retries reuse the
    /// message id, so a server that did run the request answers from its reply cache).
    ///
    /// ```
    /// use kernel_errors::Kind;
    /// assert!(Kind::Overloaded.is_retryable());
    /// assert!(!Kind::NotFound.is_retryable());
    /// ```
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            Kind::Timeout | Kind::Overloaded | Kind::ConnectionLost | Kind::NoRoute
        )
    }

    /// Whether the failure counts against the client's circuit breaker for the endpoint.
    ///
    /// Only internal errors and timeouts do: they say the endpoint is unhealthy. Overload is the
    /// server protecting itself (tripping on it would amplify the shedding), and client faults
    /// (`BadRequest`, `Forbidden`, …) say nothing about the endpoint's health.
    ///
    /// ```
    /// use kernel_errors::Kind;
    /// assert!(Kind::InternalServerError.trips_breaker());
    /// assert!(!Kind::Overloaded.trips_breaker());
    /// ```
    pub const fn trips_breaker(self) -> bool {
        matches!(self, Kind::InternalServerError | Kind::Timeout)
    }

    /// The canonical name, as carried on the wire (`PlatformError.kind`): `NOT_FOUND`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::InternalServerError => "INTERNAL_SERVER_ERROR",
            Kind::BadRequest => "BAD_REQUEST",
            Kind::Unauthorized => "UNAUTHORIZED",
            Kind::Forbidden => "FORBIDDEN",
            Kind::NotFound => "NOT_FOUND",
            Kind::Conflict => "CONFLICT",
            Kind::BadResponse => "BAD_RESPONSE",
            Kind::Timeout => "TIMEOUT",
            Kind::CircuitBroken => "CIRCUIT_BROKEN",
            Kind::Overloaded => "OVERLOADED",
            Kind::NoRoute => "NO_ROUTE",
            Kind::ConnectionLost => "CONNECTION_LOST",
        }
    }

    /// A short lowercase phrase for messages: `not found`.
    const fn phrase(self) -> &'static str {
        match self {
            Kind::InternalServerError => "internal server error",
            Kind::BadRequest => "bad request",
            Kind::Unauthorized => "unauthorized",
            Kind::Forbidden => "forbidden",
            Kind::NotFound => "not found",
            Kind::Conflict => "conflict",
            Kind::BadResponse => "bad response",
            Kind::Timeout => "timeout",
            Kind::CircuitBroken => "circuit broken",
            Kind::Overloaded => "overloaded",
            Kind::NoRoute => "no route",
            Kind::ConnectionLost => "connection lost",
        }
    }
}

impl fmt::Display for Kind {
    /// The lowercase phrase: `not found`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.phrase())
    }
}

/// The name given to [`Kind::from_str`] is not a kind's canonical name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownKind(String);

impl UnknownKind {
    /// The name that was not recognised.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UnknownKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown error kind {:?}", self.0)
    }
}

impl std::error::Error for UnknownKind {}

impl FromStr for Kind {
    type Err = UnknownKind;

    /// Parses a canonical name (`NOT_FOUND`), as [`Kind::as_str`] writes it.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| UnknownKind(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_for_every_kind() {
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
        }
        assert_eq!("NOPE".parse::<Kind>().unwrap_err().name(), "NOPE");
    }

    #[test]
    fn retryable_kinds_are_exactly_the_transient_ones() {
        let retryable: Vec<_> = Kind::ALL.into_iter().filter(|k| k.is_retryable()).collect();
        assert_eq!(
            retryable,
            [
                Kind::Timeout,
                Kind::Overloaded,
                Kind::NoRoute,
                Kind::ConnectionLost
            ]
        );
    }

    #[test]
    fn only_internal_errors_and_timeouts_trip_breakers() {
        let tripping: Vec<_> = Kind::ALL
            .into_iter()
            .filter(|k| k.trips_breaker())
            .collect();
        assert_eq!(tripping, [Kind::InternalServerError, Kind::Timeout]);
    }

    #[test]
    fn client_faults_are_4xx_and_server_faults_5xx() {
        for kind in [
            Kind::BadRequest,
            Kind::Unauthorized,
            Kind::Forbidden,
            Kind::NotFound,
        ] {
            assert!((400..500).contains(&kind.http_status()), "{kind}");
        }
        for kind in [Kind::InternalServerError, Kind::Timeout, Kind::NoRoute] {
            assert!((500..600).contains(&kind.http_status()), "{kind}");
        }
    }
}
