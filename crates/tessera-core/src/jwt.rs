//! JSON Web Tokens: signing with stored keys (RS256, ES256 or EdDSA), JWKS publication, and
//! strict verification.
//!
//! Signing is the one expensive step on the login path, so keys are parsed once and kept;
//! a signature is one aws-lc call. Verification accepts only a `kid` we published, and only
//! with that key's own algorithm: the token's `alg` must name it exactly.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value, json};

use crate::UnixTime;
use crate::rand::Random;

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("key generation failed")]
    KeyGen,
    #[error("stored key could not be loaded")]
    BadKey,
    #[error("signing failed")]
    Sign,
    #[error("token is malformed")]
    Malformed,
    #[error("token algorithm or key is not accepted")]
    BadAlgorithm,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token claims are not valid here: {0}")]
    Claims(&'static str),
}

/// A signing algorithm (RFC 7518 and RFC 8037 names). RS256 is the default: auth0-js and Lock
/// accept nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Alg {
    #[default]
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 3] = [Alg::RS256, Alg::ES256, Alg::EdDSA];

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private signing key with its id.
pub struct SigningKey {
    pub kid: String,
    pub alg: Alg,
    pair: Pair,
    rng: aws_lc_rs::rand::SystemRandom,
    /// The encoded header, `{"alg":…,"kid":…,"typ":"JWT"}` in base64url: the same for every
    /// token the key signs, so made once.
    header: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SigningKey {{ kid: {:?}, alg: {} }}",
            self.kid,
            self.alg.as_str()
        )
    }
}

impl SigningKey {
    /// Generates a fresh RSA-2048 key (RS256). Returns the key and its PKCS#8 DER for storage.
    pub fn generate(rng: &dyn Random) -> Result<(SigningKey, Vec<u8>), JwtError> {
        SigningKey::generate_for(Alg::RS256, rng)
    }

    /// Generates a fresh key for `alg`: RSA-2048, P-256 or Ed25519. Returns the key and its
    /// PKCS#8 DER for storage.
    pub fn generate_for(alg: Alg, rng: &dyn Random) -> Result<(SigningKey, Vec<u8>), JwtError> {
        let sys = aws_lc_rs::rand::SystemRandom::new();
        let der = match alg {
            Alg::RS256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| JwtError::KeyGen)?;
                AsDer::<Pkcs8V1Der>::as_der(&pair)
                    .map_err(|_| JwtError::KeyGen)?
                    .as_ref()
                    .to_vec()
            }
            Alg::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &sys)
                    .map_err(|_| JwtError::KeyGen)?
                    .as_ref()
                    .to_vec()
            }
            Alg::EdDSA => Ed25519KeyPair::generate_pkcs8(&sys)
                .map_err(|_| JwtError::KeyGen)?
                .as_ref()
                .to_vec(),
        };
        let mut kid = [0u8; 16];
        rng.fill(&mut kid);
        let key = SigningKey::from_pkcs8_for(alg, &B64.encode(kid), &der)?;
        Ok((key, der))
    }

    /// An RS256 key from its PKCS#8 DER.
    pub fn from_pkcs8(kid: &str, der: &[u8]) -> Result<SigningKey, JwtError> {
        SigningKey::from_pkcs8_for(Alg::RS256, kid, der)
    }

    pub fn from_pkcs8_for(alg: Alg, kid: &str, der: &[u8]) -> Result<SigningKey, JwtError> {
        let pair = match alg {
            Alg::RS256 => Pair::Rsa(RsaKeyPair::from_pkcs8(der).map_err(|_| JwtError::BadKey)?),
            Alg::ES256 => Pair::Ec(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| JwtError::BadKey)?,
            ),
            Alg::EdDSA => Pair::Ed(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| JwtError::BadKey)?,
            ),
        };
        let header = json!({"alg": alg.as_str(), "typ": "JWT", "kid": kid});
        Ok(SigningKey {
            kid: kid.to_string(),
            alg,
            pair,
            rng: aws_lc_rs::rand::SystemRandom::new(),
            header: B64.encode(header.to_string()),
        })
    }

    /// The public half as a JWK (RFC 7517, RFC 8037), as JWKS publishes it.
    pub fn public_jwk(&self) -> Value {
        match &self.pair {
            Pair::Rsa(p) => {
                let pk = p.public_key();
                let n = pk.modulus().big_endian_without_leading_zero();
                let e = pk.exponent().big_endian_without_leading_zero();
                json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                       "n": B64.encode(n), "e": B64.encode(e)})
            }
            Pair::Ec(p) => {
                // The uncompressed point: 0x04, then x and y, 32 bytes each.
                let point = p.public_key().as_ref();
                json!({"kty": "EC", "use": "sig", "alg": "ES256", "kid": self.kid, "crv": "P-256",
                       "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])})
            }
            Pair::Ed(p) => {
                json!({"kty": "OKP", "use": "sig", "alg": "EdDSA", "kid": self.kid, "crv": "Ed25519",
                       "x": B64.encode(p.public_key().as_ref())})
            }
        }
    }

    /// Signs `claims` as a compact JWS with header `{"alg":…,"typ":"JWT","kid":…}`.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String, JwtError> {
        let claims = serde_json::to_vec(claims).map_err(|_| JwtError::Sign)?;
        let mut out = String::with_capacity(self.header.len() + claims.len() * 4 / 3 + 400);
        out.push_str(&self.header);
        out.push('.');
        B64.encode_string(&claims, &mut out);
        let sig = match &self.pair {
            Pair::Rsa(p) => {
                let mut sig = vec![0u8; p.public_modulus_len()];
                p.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &self.rng,
                    out.as_bytes(),
                    &mut sig,
                )
                .map_err(|_| JwtError::Sign)?;
                sig
            }
            Pair::Ec(p) => p
                .sign(&self.rng, out.as_bytes())
                .map_err(|_| JwtError::Sign)?
                .as_ref()
                .to_vec(),
            Pair::Ed(p) => p.sign(out.as_bytes()).as_ref().to_vec(),
        };
        out.push('.');
        B64.encode_string(&sig, &mut out);
        Ok(out)
    }
}

#[derive(Debug, Clone)]
enum Public {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// The uncompressed P-256 point.
    Ec(Vec<u8>),
    Ed(Vec<u8>),
}

/// A public key that tokens may be verified with.
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    pub kid: String,
    pub alg: Alg,
    public: Public,
}

impl VerifyingKey {
    pub fn from_jwk(jwk: &Value) -> Result<VerifyingKey, JwtError> {
        let field = |k: &str| -> Result<Vec<u8>, JwtError> {
            let s = jwk.get(k).and_then(Value::as_str).ok_or(JwtError::BadKey)?;
            B64.decode(s).map_err(|_| JwtError::BadKey)
        };
        let text = |k: &str| jwk.get(k).and_then(Value::as_str);
        let kid = text("kid").ok_or(JwtError::BadKey)?;
        let (alg, public) = match (text("kty"), text("crv")) {
            (Some("RSA") | None, _) => (
                Alg::RS256,
                Public::Rsa {
                    n: field("n")?,
                    e: field("e")?,
                },
            ),
            (Some("EC"), Some("P-256")) => {
                let (x, y) = (field("x")?, field("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(JwtError::BadKey);
                }
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (Alg::ES256, Public::Ec(point))
            }
            (Some("OKP"), Some("Ed25519")) => {
                let x = field("x")?;
                if x.len() != 32 {
                    return Err(JwtError::BadKey);
                }
                (Alg::EdDSA, Public::Ed(x))
            }
            _ => return Err(JwtError::BadKey),
        };
        Ok(VerifyingKey {
            kid: kid.to_string(),
            alg,
            public,
        })
    }

    fn check(&self, signed: &[u8], sig: &[u8]) -> Result<(), JwtError> {
        let ok = match &self.public {
            Public::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, sig)
                .is_ok(),
            Public::Ec(point) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(signed, sig)
                    .is_ok()
            }
            Public::Ed(x) => signature::UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(signed, sig)
                .is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(JwtError::BadSignature)
        }
    }
}

/// What a verified token must satisfy besides its signature.
pub struct Expectations<'a> {
    pub issuer: &'a str,
    /// The token's `aud` (string or array) must contain this.
    pub audience: &'a str,
    pub now: UnixTime,
    /// Allowed clock skew, in seconds.
    pub leeway: i64,
}

/// Verifies a compact JWS and returns its claims.
pub fn verify(
    token: &str,
    keys: &[VerifyingKey],
    expect: &Expectations<'_>,
) -> Result<Map<String, Value>, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: Value = decode_json(h)?;
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(JwtError::BadAlgorithm)?;
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or(JwtError::BadAlgorithm)?;
    // The key decides the algorithm; the header must agree with it exactly.
    if header.get("alg").and_then(Value::as_str) != Some(key.alg.as_str()) {
        return Err(JwtError::BadAlgorithm);
    }
    let sig = B64.decode(s).map_err(|_| JwtError::Malformed)?;
    let signed = &token[..h.len() + 1 + p.len()];
    key.check(signed.as_bytes(), &sig)?;
    let claims: Value = decode_json(p)?;
    let Value::Object(claims) = claims else {
        return Err(JwtError::Malformed);
    };
    check_claims(&claims, expect)?;
    Ok(claims)
}

/// The `kid` a compact JWS names in its header, if it parses.
pub fn header_kid(token: &str) -> Option<String> {
    let h = token.split('.').next()?;
    decode_json(h)
        .ok()?
        .get("kid")?
        .as_str()
        .map(str::to_string)
}

fn check_claims(c: &Map<String, Value>, e: &Expectations<'_>) -> Result<(), JwtError> {
    if c.get("iss").and_then(Value::as_str) != Some(e.issuer) {
        return Err(JwtError::Claims("iss"));
    }
    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => a == e.audience,
        Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(e.audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(JwtError::Claims("aud"));
    }
    let exp = c
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(JwtError::Claims("exp"))?;
    if exp + e.leeway <= e.now {
        return Err(JwtError::Claims("exp"));
    }
    if let Some(nbf) = c.get("nbf").and_then(Value::as_i64)
        && nbf - e.leeway > e.now
    {
        return Err(JwtError::Claims("nbf"));
    }
    Ok(())
}

fn decode_json(part: &str) -> Result<Value, JwtError> {
    let bytes = B64.decode(part).map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::SystemRandom;

    fn claims(exp: i64) -> Map<String, Value> {
        let v = json!({"iss": "https://t.example/", "aud": ["api", "https://t.example/userinfo"],
                       "sub": "email|abc", "exp": exp, "iat": 0});
        v.as_object().cloned().unwrap()
    }

    fn expect(now: i64) -> Expectations<'static> {
        Expectations {
            issuer: "https://t.example/",
            audience: "https://t.example/userinfo",
            now,
            leeway: 0,
        }
    }

    #[test]
    fn sign_then_verify_round_trip_and_key_reload() {
        let (key, der) = SigningKey::generate(&SystemRandom).unwrap();
        let jwk = key.public_jwk();
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["e"], "AQAB");
        let vk = VerifyingKey::from_jwk(&jwk).unwrap();
        let reloaded = SigningKey::from_pkcs8(&key.kid, &der).unwrap();
        let token = reloaded.sign(&claims(100)).unwrap();
        let c = verify(&token, std::slice::from_ref(&vk), &expect(50)).unwrap();
        assert_eq!(c["sub"], "email|abc");
        // The header and the claims as compact JSON, keys in order, base64url without padding.
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decoded = |p: &str| String::from_utf8(B64.decode(p).unwrap()).unwrap();
        assert_eq!(
            decoded(parts[0]),
            format!(r#"{{"alg":"RS256","kid":"{}","typ":"JWT"}}"#, key.kid)
        );
        assert_eq!(
            decoded(parts[1]),
            r#"{"aud":["api","https://t.example/userinfo"],"exp":100,"iat":0,"iss":"https://t.example/","sub":"email|abc"}"#
        );
        assert_eq!(B64.decode(parts[2]).unwrap().len(), 256);
        // expired, wrong audience, wrong issuer
        assert!(matches!(
            verify(&token, std::slice::from_ref(&vk), &expect(100)),
            Err(JwtError::Claims("exp"))
        ));
        let other_aud = Expectations {
            audience: "x",
            ..expect(50)
        };
        assert!(verify(&token, std::slice::from_ref(&vk), &other_aud).is_err());
        let other_iss = Expectations {
            issuer: "https://evil/",
            ..expect(50)
        };
        assert!(verify(&token, std::slice::from_ref(&vk), &other_iss).is_err());
    }

    #[test]
    fn every_algorithm_signs_and_verifies_and_refuses_the_others() {
        let mut keys = Vec::new();
        for alg in Alg::ALL {
            let (key, der) = SigningKey::generate_for(alg, &SystemRandom).unwrap();
            let jwk = key.public_jwk();
            assert_eq!(jwk["alg"], alg.as_str());
            let vk = VerifyingKey::from_jwk(&jwk).unwrap();
            assert_eq!(vk.alg, alg);
            let reloaded = SigningKey::from_pkcs8_for(alg, &key.kid, &der).unwrap();
            let token = reloaded.sign(&claims(100)).unwrap();
            let c = verify(&token, std::slice::from_ref(&vk), &expect(50)).unwrap();
            assert_eq!(c["sub"], "email|abc");
            // tampered payload
            let parts: Vec<&str> = token.split('.').collect();
            let mut evil = claims(100);
            evil.insert("sub".into(), json!("email|attacker"));
            let forged = format!(
                "{}.{}.{}",
                parts[0],
                B64.encode(Value::Object(evil).to_string()),
                parts[2]
            );
            assert!(matches!(
                verify(&forged, std::slice::from_ref(&vk), &expect(50)),
                Err(JwtError::BadSignature)
            ));
            keys.push((key, vk, token));
        }
        // A header naming another algorithm than the key's is refused, whatever the signature.
        for (key, vk, token) in &keys {
            for other in Alg::ALL.into_iter().filter(|a| *a != key.alg) {
                let parts: Vec<&str> = token.split('.').collect();
                let header = B64.encode(format!(
                    r#"{{"alg":"{}","typ":"JWT","kid":"{}"}}"#,
                    other.as_str(),
                    key.kid
                ));
                let forged = format!("{header}.{}.{}", parts[1], parts[2]);
                assert!(matches!(
                    verify(&forged, std::slice::from_ref(vk), &expect(50)),
                    Err(JwtError::BadAlgorithm)
                ));
            }
        }
    }

    #[test]
    fn forgeries_are_refused() {
        let (key, _) = SigningKey::generate(&SystemRandom).unwrap();
        let vk = VerifyingKey::from_jwk(&key.public_jwk()).unwrap();
        let token = key.sign(&claims(100)).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        // alg: none
        let none_header = B64.encode(r#"{"alg":"none","typ":"JWT","kid":"x"}"#);
        let forged = format!("{none_header}.{}.", parts[1]);
        assert!(verify(&forged, std::slice::from_ref(&vk), &expect(50)).is_err());
        // HS256 with the public key as the HMAC secret
        let hs_header = B64.encode(format!(
            r#"{{"alg":"HS256","typ":"JWT","kid":"{}"}}"#,
            key.kid
        ));
        let forged = format!("{hs_header}.{}.{}", parts[1], parts[2]);
        assert!(matches!(
            verify(&forged, std::slice::from_ref(&vk), &expect(50)),
            Err(JwtError::BadAlgorithm)
        ));
        // tampered payload
        let mut c = claims(100);
        c.insert("sub".into(), json!("email|attacker"));
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(Value::Object(c).to_string()),
            parts[2]
        );
        assert!(matches!(
            verify(&forged, std::slice::from_ref(&vk), &expect(50)),
            Err(JwtError::BadSignature)
        ));
        // a key we did not publish
        let (other, _) = SigningKey::generate(&SystemRandom).unwrap();
        let foreign = other.sign(&claims(100)).unwrap();
        assert!(verify(&foreign, std::slice::from_ref(&vk), &expect(50)).is_err());
        // garbage
        assert!(verify("a.b", std::slice::from_ref(&vk), &expect(50)).is_err());
        assert!(verify("a.b.c.d", &[vk], &expect(50)).is_err());
    }
}
