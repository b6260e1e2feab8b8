//! Random and mutated tokens: none is accepted, none panics. Seeded, bounded in count.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

use std::time::{Duration, SystemTime};

use kernel_auth::{Claims, Keyring, TokenError, TokenSigner};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn setup() -> (Keyring, String, Claims) {
    let signer = TokenSigner::from_seed("fuzz", &[3; 32]).unwrap();
    let claims = Claims {
        session_id: "s-1".into(),
        mechanism: "h2".into(),
        device: "cli".into(),
        user_id: "ada".into(),
        created: 1_000,
        expires: 2_000,
        renew: None,
        roles: vec!["ADMIN".into()],
    };
    let mut keys = Keyring::new();
    keys.insert(signer.key_id(), signer.public_key()).unwrap();
    (keys, signer.sign(&claims), claims)
}

#[test]
fn mutated_tokens_are_all_refused() {
    let (keys, token, claims) = setup();
    let now = at(1_500);
    assert_eq!(keys.verify(&token, now), Ok(claims));
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \x00\xff";
    let mut refused = 0;
    for _ in 0..5_000 {
        let mut bytes = token.clone().into_bytes();
        match rng.random_range(0..4) {
            // Change one to four bytes.
            0 => {
                for _ in 0..rng.random_range(1..=4) {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = alphabet[rng.random_range(0..alphabet.len())];
                }
            }
            // Cut it short.
            1 => bytes.truncate(rng.random_range(0..bytes.len())),
            // Insert a byte.
            2 => {
                let at = rng.random_range(0..=bytes.len());
                bytes.insert(at, alphabet[rng.random_range(0..alphabet.len())]);
            }
            // Remove a byte.
            _ => {
                let at = rng.random_range(0..bytes.len());
                bytes.remove(at);
            }
        }
        let Ok(mutated) = String::from_utf8(bytes) else {
            continue;
        };
        if mutated == token {
            continue;
        }
        let verified = keys.verify(&mutated, now);
        // base64url without padding has one encoding per value except in the last character's
        // unused bits; a mutation there decodes to the same signature bytes and still verifies
        // the same signed text, which is not a forgery. Anything else must be refused.
        if let Ok(accepted) = &verified {
            let (signed, _) = mutated.rsplit_once('.').unwrap();
            let (original, _) = token.rsplit_once('.').unwrap();
            assert_eq!(signed, original, "a mutated token was accepted: {mutated}");
            assert_eq!(accepted, &keys.verify(&token, now).unwrap());
            continue;
        }
        refused += 1;
    }
    assert!(refused > 3_500, "only {refused} mutations were refused");
}

#[test]
fn random_input_is_refused_without_panicking() {
    let (keys, _, _) = setup();
    let mut rng = StdRng::seed_from_u64(0xf422);
    for n in 0..20_000 {
        let len = rng.random_range(0..200);
        let text: String = (0..len)
            .map(|_| match rng.random_range(0..10) {
                0 => '.',
                1 => char::from_u32(rng.random_range(0..0x11_0000)).unwrap_or('?'),
                _ => char::from(rng.random_range(b' '..=b'~')),
            })
            .collect();
        // Some start like a real token, to get past the first checks.
        let text = if n % 3 == 0 {
            format!("v1.fuzz.{text}")
        } else {
            text
        };
        assert!(
            keys.verify(&text, at(1_500)).is_err(),
            "{text:?} was accepted"
        );
    }
    let huge = format!("v1.fuzz.{}.AAAA", "A".repeat(1 << 20));
    assert_eq!(
        keys.verify(&huge, at(1_500)),
        Err(TokenError::Malformed("too long"))
    );
}
