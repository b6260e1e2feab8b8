//! The signing key from configuration, and the keys `publickeys` answers.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use kernel_auth::TokenSigner;
use kernel_errors::Error;

use crate::codes;

/// A signer from a base64 32-byte Ed25519 seed (standard or URL-safe alphabet, padded or
/// not), as `KERNEL_LOGIN_SIGNING_KEY` holds it. Make one with
/// `head -c 32 /dev/urandom | base64`.
///
/// ```
/// let signer = kernel_login::signer_from_base64("2026-12", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")?;
/// assert_eq!(signer.key_id(), "2026-12");
/// assert!(kernel_login::signer_from_base64("2026-12", "dG9vIHNob3J0").is_err());
/// # Ok::<(), kernel_errors::Error>(())
/// ```
///
/// # Errors
/// `InternalServerError` [`codes::BAD_KEY`] if the seed is not base64 of 32 bytes or the key
/// id is not 1 to 64 of `[A-Za-z0-9_-]`. The message never repeats the seed.
pub fn signer_from_base64(key_id: &str, seed: &str) -> Result<TokenSigner, Error> {
    let bytes = decode(seed).ok_or_else(|| {
        Error::internal_server_error(codes::BAD_KEY, "the signing key is not base64")
    })?;
    let seed: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
        Error::internal_server_error(
            codes::BAD_KEY,
            format!("the signing key is {} bytes, not 32", bytes.len()),
        )
    })?;
    TokenSigner::from_seed(key_id, &seed)
        .map_err(|error| Error::internal_server_error(codes::BAD_KEY, error.to_string()))
}

/// A retired public key from `<key id>:<base64 32 bytes>`, as `KERNEL_LOGIN_RETIRED_KEYS`
/// lists them (comma-separated).
///
/// # Errors
/// `InternalServerError` [`codes::BAD_KEY`] naming what is wrong.
pub fn retired_key_from_str(entry: &str) -> Result<(String, [u8; 32]), Error> {
    let bad = |why: &str| Error::internal_server_error(codes::BAD_KEY, format!("{why}: {entry:?}"));
    let (key_id, public) = entry
        .trim()
        .split_once(':')
        .ok_or_else(|| bad("a retired key is <key id>:<base64 public key>"))?;
    let bytes = decode(public).ok_or_else(|| bad("a retired key is not base64"))?;
    let public: [u8; 32] = bytes
        .try_into()
        .map_err(|_| bad("a retired key is not 32 bytes"))?;
    Ok((key_id.to_owned(), public))
}

fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD.decode(text).ok().or_else(|| {
        STANDARD
            .decode(format!("{text}{}", "=".repeat((4 - text.len() % 4) % 4)))
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_decode_in_either_alphabet_and_errors_never_show_them() {
        let seed = [0xfb_u8; 32];
        let standard = STANDARD.encode(seed);
        let url = URL_SAFE_NO_PAD.encode(seed);
        assert_ne!(
            standard.trim_end_matches('='),
            url,
            "the alphabets differ here"
        );
        let a = signer_from_base64("k", &standard).unwrap();
        let b = signer_from_base64("k", &url).unwrap();
        assert_eq!(a.public_key(), b.public_key());

        let short = STANDARD.encode([7_u8; 31]);
        let error = signer_from_base64("k", &short).unwrap_err();
        assert_eq!(error.code(), codes::BAD_KEY);
        assert!(!error.to_string().contains(&short), "{error}");
        assert!(!format!("{a:?}").contains(&standard));
        assert_eq!(
            signer_from_base64("bad id!", &standard).unwrap_err().code(),
            codes::BAD_KEY
        );
    }

    #[test]
    fn retired_keys_parse_from_id_and_base64() {
        let public = TokenSigner::from_seed("old", &[1; 32])
            .unwrap()
            .public_key();
        let entry = format!("old:{}", STANDARD.encode(public));
        assert_eq!(
            retired_key_from_str(&entry).unwrap(),
            ("old".into(), public)
        );
        for bad in ["old", "old:%%%", "old:AAAA"] {
            assert_eq!(
                retired_key_from_str(bad).unwrap_err().code(),
                codes::BAD_KEY
            );
        }
    }
}
