//! Keyed hashing, token hashing, constant-time comparison, and sealing secrets at rest.
//!
//! One server secret (32+ bytes, from the configuration or generated at first start) is the
//! root of every derived key. Codes are low-entropy, so they are stored only as an HMAC under a
//! key that never enters the database: a copy of the database alone does not reveal them.
//! Tokens and client secrets have 256 bits of entropy, so a plain SHA-256 is enough for them,
//! and it keeps working when the server secret is rotated.

use aws_lc_rs::{aead, digest, hmac};
use subtle::ConstantTimeEq;

use crate::rand::Random;

/// The server's root secret. Its `Debug` output is redacted.
#[derive(Clone)]
pub struct ServerSecret {
    code_key: hmac::Key,
    /// The key of [`ServerSecret::seal`], made once: setting up AES-GCM's key schedule and
    /// tables is most of the cost of sealing a message.
    seal_aead: std::sync::Arc<aead::LessSafeKey>,
    /// The HMAC key that derives [`ServerSecret::seal_token`]'s keys, made once too.
    token_mac: hmac::Key,
    mac_key: hmac::Key,
}

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecret(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the server secret must be at least 32 bytes")]
    SecretTooShort,
    #[error("sealed data could not be opened (wrong server secret, or tampered data)")]
    Unseal,
}

impl ServerSecret {
    pub fn new(root: &[u8]) -> Result<Self, CryptoError> {
        if root.len() < 32 {
            return Err(CryptoError::SecretTooShort);
        }
        let root_key = hmac::Key::new(hmac::HMAC_SHA256, root);
        let derive = |label: &[u8]| -> [u8; 32] {
            let tag = hmac::sign(&root_key, label);
            let mut out = [0u8; 32];
            out.copy_from_slice(tag.as_ref());
            out
        };
        let code_key = hmac::Key::new(hmac::HMAC_SHA256, &derive(b"tessera/v1/otp-code-hash"));
        let seal_key = derive(b"tessera/v1/seal-at-rest");
        let mac_key = hmac::Key::new(hmac::HMAC_SHA256, &derive(b"tessera/v1/mac"));
        Ok(ServerSecret {
            code_key,
            seal_aead: std::sync::Arc::new(aead_key(&seal_key)),
            token_mac: hmac::Key::new(hmac::HMAC_SHA256, &seal_key),
            mac_key,
        })
    }

    /// The keyed hash of a one-time code, bound to the connection and identifier it was sent to.
    pub fn hash_code(&self, connection: &str, identifier: &str, code: &str) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.code_key);
        for part in [connection, identifier, code] {
            ctx.update(&(part.len() as u32).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        ctx.sign().as_ref().to_vec()
    }

    /// A keyed MAC of `data` for `purpose` (CSRF tokens, same-device cookies). Different
    /// purposes never share a tag.
    pub fn mac(&self, purpose: &str, data: &[u8]) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.mac_key);
        ctx.update(&(purpose.len() as u32).to_be_bytes());
        ctx.update(purpose.as_bytes());
        ctx.update(data);
        ctx.sign().as_ref().to_vec()
    }

    /// Encrypts `plain` (AES-256-GCM, random nonce); `purpose` is bound as associated data.
    pub fn seal(&self, rng: &dyn Random, purpose: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        rng.fill(&mut nonce);
        seal_with(&self.seal_aead, nonce, &nonce, purpose, plain)
    }

    /// Decrypts what [`ServerSecret::seal`] produced for the same `purpose`.
    pub fn open(&self, purpose: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < aead::NONCE_LEN + aead::AES_256_GCM.tag_len() {
            return Err(CryptoError::Unseal);
        }
        let (nonce, body) = sealed.split_at(aead::NONCE_LEN);
        let nonce =
            aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Unseal)?;
        let mut buf = body.to_vec();
        let plain = self
            .seal_aead
            .open_in_place(nonce, aead::Aad::from(purpose.as_bytes()), &mut buf)
            .map_err(|_| CryptoError::Unseal)?;
        Ok(plain.to_vec())
    }

    /// Encrypts a bearer token's content (AES-256-GCM) under a key of its own: the key is an
    /// HMAC of a random 128-bit salt under the sealing key, so no (key, nonce) pair is ever
    /// used twice however many tokens one server secret seals (a random 96-bit nonce under
    /// one key would allow about 2^32). The output is the salt, then the ciphertext and tag.
    pub fn seal_token(&self, rng: &dyn Random, purpose: &str, plain: &[u8]) -> Vec<u8> {
        let mut salt = [0u8; TOKEN_SALT_LEN];
        rng.fill(&mut salt);
        let key = self.token_key(purpose, &salt);
        seal_with(&key, [0u8; aead::NONCE_LEN], &salt, purpose, plain)
    }

    /// Decrypts what [`ServerSecret::seal_token`] produced for the same `purpose`.
    pub fn open_token(&self, purpose: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < TOKEN_SALT_LEN + aead::AES_256_GCM.tag_len() {
            return Err(CryptoError::Unseal);
        }
        let (salt, body) = sealed.split_at(TOKEN_SALT_LEN);
        let mut buf = body.to_vec();
        let plain = self
            .token_key(purpose, salt)
            .open_in_place(
                aead::Nonce::assume_unique_for_key([0u8; aead::NONCE_LEN]),
                aead::Aad::from(purpose.as_bytes()),
                &mut buf,
            )
            .map_err(|_| CryptoError::Unseal)?;
        Ok(plain.to_vec())
    }

    fn token_key(&self, purpose: &str, salt: &[u8]) -> aead::LessSafeKey {
        let mut ctx = hmac::Context::with_key(&self.token_mac);
        ctx.update(b"tessera/v1/token-key");
        ctx.update(&(purpose.len() as u32).to_be_bytes());
        ctx.update(purpose.as_bytes());
        ctx.update(salt);
        aead_key(ctx.sign().as_ref())
    }
}

/// An AES-256-GCM key of 32 bytes (an HMAC-SHA256 tag, or a key derived as one).
fn aead_key(key: &[u8]) -> aead::LessSafeKey {
    // A 32-byte key is always valid for AES-256-GCM.
    match aead::UnboundKey::new(&aead::AES_256_GCM, key) {
        Ok(k) => aead::LessSafeKey::new(k),
        Err(_) => unreachable!("32-byte key for AES-256-GCM"),
    }
}

const TOKEN_SALT_LEN: usize = 16;

/// `prefix`, then `plain` sealed under `key` and `nonce` with `purpose` as associated data.
fn seal_with(
    key: &aead::LessSafeKey,
    nonce: [u8; aead::NONCE_LEN],
    prefix: &[u8],
    purpose: &str,
    plain: &[u8],
) -> Vec<u8> {
    let mut buf = plain.to_vec();
    // Sealing only fails for inputs larger than GCM allows (64 GiB); ours are kilobytes.
    let sealed = key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::from(purpose.as_bytes()),
        &mut buf,
    );
    if sealed.is_err() {
        buf.clear();
    }
    let mut out = prefix.to_vec();
    out.extend_from_slice(&buf);
    out
}

/// SHA-256 of a high-entropy value (a token or a client secret).
pub fn sha256(value: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, value.as_bytes())
        .as_ref()
        .to_vec()
}

/// Compares two byte strings in constant time (for equal lengths).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::SystemRandom;

    fn secret() -> ServerSecret {
        ServerSecret::new(&[7u8; 32]).unwrap()
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(ServerSecret::new(&[1u8; 31]).is_err());
    }

    #[test]
    fn code_hash_is_keyed_and_bound_to_identity() {
        let s = secret();
        let h = s.hash_code("email", "a@example.com", "123456");
        assert_eq!(h.len(), 32);
        assert_eq!(h, s.hash_code("email", "a@example.com", "123456"));
        assert_ne!(h, s.hash_code("email", "b@example.com", "123456"));
        assert_ne!(h, s.hash_code("sms", "a@example.com", "123456"));
        let other = ServerSecret::new(&[8u8; 32]).unwrap();
        assert_ne!(h, other.hash_code("email", "a@example.com", "123456"));
        // length-prefixing keeps field boundaries: ("ab","c") differs from ("a","bc")
        assert_ne!(s.hash_code("ab", "c", "1"), s.hash_code("a", "bc", "1"));
    }

    #[test]
    fn seal_round_trips_and_detects_tampering() {
        let s = secret();
        let sealed = s.seal(&SystemRandom, "outbox", b"hello 123456");
        assert!(!sealed.windows(6).any(|w| w == b"123456"));
        assert_eq!(s.open("outbox", &sealed).unwrap(), b"hello 123456");
        assert!(s.open("other-purpose", &sealed).is_err());
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(s.open("outbox", &bad).is_err());
        assert!(
            ServerSecret::new(&[9u8; 32])
                .unwrap()
                .open("outbox", &sealed)
                .is_err()
        );
    }

    #[test]
    fn sealed_tokens_round_trip_with_a_key_each() {
        let s = secret();
        let a = s.seal_token(&SystemRandom, "access", b"{\"u\":\"email|1\"}");
        let b = s.seal_token(&SystemRandom, "access", b"{\"u\":\"email|1\"}");
        assert_ne!(a, b);
        assert_eq!(s.open_token("access", &a).unwrap(), b"{\"u\":\"email|1\"}");
        assert!(s.open_token("other", &a).is_err());
        assert!(s.open("access", &a).is_err());
        for i in 0..a.len() {
            let mut bad = a.clone();
            bad[i] ^= 0x40;
            assert!(s.open_token("access", &bad).is_err(), "byte {i} flipped");
        }
        assert!(s.open_token("access", &a[..20]).is_err());
        let other = ServerSecret::new(&[9u8; 32]).unwrap();
        assert!(other.open_token("access", &a).is_err());
    }

    /// What was sealed before the keys were made once (outbox rows, refresh tokens in the
    /// database) still opens, and sealing gives the same bytes: the keys are the same.
    #[test]
    fn sealed_data_keeps_its_format() {
        struct Ones;
        impl Random for Ones {
            fn fill(&self, b: &mut [u8]) {
                b.fill(1)
            }
        }
        let s = secret();
        let hex = |v: &[u8]| v.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let sealed =
            "010101010101010101010101d2a37b93dbcd1ce18514cdeed550e301dcdd22ee20bf22f6b432aa65";
        assert_eq!(
            hex(&s.seal(&Ones, "tessera/outbox/v1", b"hello 123456")),
            sealed
        );
        let token = "01010101010101010101010101010101a7877a9e642bf77fa3b26d24fb5a8bca\
                     9492c08d6e1417c88194ddfe751fd6";
        assert_eq!(
            hex(&s.seal_token(&Ones, "access", b"{\"u\":\"email|1\"}")),
            token
        );
        let bytes = |h: &str| -> Vec<u8> {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect()
        };
        assert_eq!(
            s.open("tessera/outbox/v1", &bytes(sealed)).unwrap(),
            b"hello 123456"
        );
        assert_eq!(
            s.open_token("access", &bytes(token)).unwrap(),
            b"{\"u\":\"email|1\"}"
        );
    }

    #[test]
    fn ct_eq_compares_content_and_length() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }
}
