//! The machine's token-signing limits: JWT signatures per second on every core, through
//! aws-lc-rs (the library `tessera_core::jwt` signs with), for each algorithm an application can
//! choose. Each signature covers a JWT signing input of an id_token's size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

/// The JWS algorithms, as `alg` names them.
pub const ALGS: [&str; 3] = ["RS256", "ES256", "EdDSA"];

enum Key {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl Key {
    fn generate(alg: &str) -> anyhow::Result<Key> {
        let err = |e: aws_lc_rs::error::Unspecified| anyhow::anyhow!("{alg} key: {e}");
        Ok(match alg {
            "RS256" => Key::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(err)?),
            "ES256" => {
                Key::Ec(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(err)?)
            }
            "EdDSA" => Key::Ed(Ed25519KeyPair::generate().map_err(err)?),
            other => anyhow::bail!("unknown algorithm {other:?}"),
        })
    }

    fn sign(&self, rng: &SystemRandom, msg: &[u8], out: &mut Vec<u8>) -> bool {
        match self {
            Key::Rsa(k) => {
                out.resize(k.public_modulus_len(), 0);
                k.sign(&RSA_PKCS1_SHA256, rng, msg, out).is_ok()
            }
            Key::Ec(k) => k.sign(rng, msg).is_ok_and(|s| {
                out.clear();
                out.extend_from_slice(s.as_ref());
                true
            }),
            Key::Ed(k) => {
                out.clear();
                out.extend_from_slice(k.sign(msg).as_ref());
                true
            }
        }
    }
}

/// Signatures per second with `alg` on every core, counted over `window`.
pub fn limit(alg: &str, window: Duration) -> anyhow::Result<f64> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let key = Arc::new(Key::generate(alg)?);
    let header = B64.encode(format!(
        r#"{{"alg":"{alg}","typ":"JWT","kid":"0123456789abcdef"}}"#
    ));
    let claims = B64.encode(
        r#"{"iss":"http://127.0.0.1:8080/","sub":"email|0123456789abcdef01234567","aud":"bench","iat":1800000000,"exp":1800036000,"email":"login12345@bench.test","email_verified":true}"#,
    );
    let input: Arc<[u8]> = format!("{header}.{claims}").into_bytes().into();
    let handles: Vec<_> = (0..cores)
        .map(|_| {
            let (key, input) = (Arc::clone(&key), Arc::clone(&input));
            std::thread::spawn(move || {
                let rng = SystemRandom::new();
                let mut sig = Vec::new();
                let started = Instant::now();
                let mut n = 0u64;
                while started.elapsed() < window {
                    if key.sign(&rng, &input, &mut sig) {
                        // The signature is base64url-encoded into the token, as Tessera does.
                        n += u64::from(!B64.encode(&sig).is_empty());
                    }
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().filter_map(|h| h.join().ok()).sum();
    Ok(total as f64 / window.as_secs_f64())
}
