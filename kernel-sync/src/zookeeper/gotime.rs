//! Go's `time.Time` binary form, which H2 stored in its lock nodes as the holder's expiry.
//!
//! Writing the same form lets H2's Go services and ours reap each other's expired nodes.
//!
//! ```text
//! version 1 (15 bytes): [0x01][i64 seconds since 0001-01-01T00:00:00Z][i32 nanoseconds][i16 zone offset in minutes, -1 = UTC]
//! version 2 (16 bytes): the same, then [i8 zone offset seconds]
//! ```
//! All big-endian. The zone offset does not change the instant.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from 0001-01-01T00:00:00Z to the Unix epoch.
const UNIX_TO_GO: i64 = 62_135_596_800;

/// `at` in Go's version-1 binary form, in UTC.
pub(crate) fn encode(at: SystemTime) -> [u8; 15] {
    let (unix_secs, nanos) = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => (secs_i64(after), after.subsec_nanos()),
        Err(before) => {
            let before = before.duration();
            let (secs, nanos) = (secs_i64(before), before.subsec_nanos());
            if nanos == 0 {
                (-secs, 0)
            } else {
                (-secs - 1, 1_000_000_000 - nanos)
            }
        }
    };
    let go_secs = unix_secs.saturating_add(UNIX_TO_GO);
    let mut out = [0_u8; 15];
    out[0] = 1;
    out[1..9].copy_from_slice(&go_secs.to_be_bytes());
    out[9..13].copy_from_slice(&nanos.to_be_bytes());
    out[13..15].copy_from_slice(&(-1_i16).to_be_bytes());
    out
}

/// The instant in `data`, if it is Go's binary form (version 1 or 2).
pub(crate) fn decode(data: &[u8]) -> Option<SystemTime> {
    let valid = matches!((data.first(), data.len()), (Some(1), 15) | (Some(2), 16));
    if !valid {
        return None;
    }
    let go_secs = i64::from_be_bytes(data.get(1..9)?.try_into().ok()?);
    let nanos = u32::from_be_bytes(data.get(9..13)?.try_into().ok()?);
    if nanos >= 1_000_000_000 {
        return None;
    }
    let unix_secs = go_secs.checked_sub(UNIX_TO_GO)?;
    if unix_secs >= 0 {
        let secs = u64::try_from(unix_secs).ok()?;
        UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
    } else {
        let secs = unix_secs
            .checked_neg()
            .and_then(|s| u64::try_from(s).ok())?;
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

fn secs_i64(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip() {
        for at in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            UNIX_EPOCH - Duration::new(10, 250_000_000),
        ] {
            assert_eq!(decode(&encode(at)), Some(at));
        }
    }

    /// `time.Unix(1700000000, 5).UTC().MarshalBinary()`, laid out by hand from Go's
    /// `Time.MarshalBinary` source (seconds since year 1 = 1700000000 + 62135596800).
    #[test]
    fn go_encoded_instants_decode() {
        let go = [
            0x01, 0x00, 0x00, 0x00, 0x0e, 0xdc, 0xe5, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x05, 0xff,
            0xff,
        ];
        assert_eq!(
            decode(&go),
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5))
        );
        assert_eq!(encode(UNIX_EPOCH + Duration::new(1_700_000_000, 5)), go);
        let mut v2 = go.to_vec();
        v2[0] = 2;
        v2.push(0);
        assert_eq!(
            decode(&v2),
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5))
        );
    }

    #[test]
    fn anything_else_is_not_an_instant() {
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"127.0.0.1"), None);
        assert_eq!(decode(&[1; 14]), None);
        let mut bad_nanos = encode(UNIX_EPOCH);
        bad_nanos[9..13].copy_from_slice(&2_000_000_000_u32.to_be_bytes());
        assert_eq!(decode(&bad_nanos), None);
    }
}
