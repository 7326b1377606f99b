//! The key ring: signing keys loaded from the store, kept parsed in memory.
//!
//! At first start one node generates an RS256 key and inserts it; a unique index (one current
//! key per algorithm) lets exactly one insert win when several nodes start together, and
//! everyone then loads the winner. An ES256 or EdDSA key is made the same way the first time an
//! application signs with that algorithm. Keys are re-read periodically, so a rotation made on
//! one node is published by every node's JWKS.

use std::sync::{Arc, RwLock};

use base64::Engine as _;
use serde_json::{Value, json};
use tessera_core::UnixTime;
use tessera_core::crypto::ServerSecret;
use tessera_core::jwt::{Alg, SigningKey, VerifyingKey};
use tessera_core::rand::Random;
use tessera_store::{KeyStatus, Store, StoredKey};

/// The sealing purpose for private keys at rest.
const SEAL_PURPOSE: &str = "tessera/signing-key/v1";

pub struct Keys {
    /// The current RS256 key: the default, and the Management API's.
    pub signing: Arc<SigningKey>,
    /// The current key of each algorithm in use.
    signers: Vec<Arc<SigningKey>>,
    pub verifying: Vec<VerifyingKey>,
    /// The JWKS document, rendered once.
    pub jwks: Arc<Vec<u8>>,
    kids: Vec<String>,
}

impl Keys {
    /// The current key for `alg`, if one is in use.
    pub fn signer(&self, alg: Alg) -> Option<Arc<SigningKey>> {
        self.signers.iter().find(|k| k.alg == alg).cloned()
    }
}

pub struct KeyRing {
    current: RwLock<Arc<Keys>>,
    /// Bounds the re-reads of the store that an unknown `kid` makes to one a second.
    forced: crate::limits::OncePerSecond,
}

impl KeyRing {
    /// Loads the keys, generating the first one if the store has none.
    pub async fn load(
        store: &dyn Store,
        secret: &ServerSecret,
        rng: &dyn Random,
        now: UnixTime,
    ) -> anyhow::Result<KeyRing> {
        let mut stored = store.signing_keys().await?;
        if !stored
            .iter()
            .any(|k| k.status == KeyStatus::Current && k.alg == Alg::RS256.as_str())
        {
            let fresh = generate(Alg::RS256, secret, rng, now)?;
            store.insert_first_key(&fresh).await?;
            stored = store.signing_keys().await?;
        }
        let keys = build(&stored, secret)?;
        Ok(KeyRing {
            current: RwLock::new(Arc::new(keys)),
            forced: crate::limits::OncePerSecond::new(),
        })
    }

    /// The current key for `alg`, made (and stored, race-safe) the first time an application
    /// signs with it.
    pub async fn signer(
        &self,
        alg: Alg,
        store: &dyn Store,
        secret: &ServerSecret,
        rng: &dyn Random,
        now: UnixTime,
    ) -> anyhow::Result<Arc<SigningKey>> {
        if let Some(k) = self.get().signer(alg) {
            return Ok(k);
        }
        store
            .insert_first_key(&generate(alg, secret, rng, now)?)
            .await?;
        self.refresh(store, secret).await?;
        self.get()
            .signer(alg)
            .ok_or_else(|| anyhow::anyhow!("no current {} key after inserting one", alg.as_str()))
    }

    pub fn get(&self) -> Arc<Keys> {
        match self.current.read() {
            Ok(k) => Arc::clone(&k),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Whether `kid` is published; if not, re-reads the store (at most once a second), because
    /// another node may have rotated the keys since the last periodic refresh.
    pub async fn knows_or_refresh(
        &self,
        kid: &str,
        store: &dyn Store,
        secret: &ServerSecret,
    ) -> bool {
        if self.get().verifying.iter().any(|k| k.kid == kid) {
            return true;
        }
        if self.forced.due().is_some()
            && let Err(e) = self.refresh(store, secret).await
        {
            tracing::warn!(error = %e, "could not refresh signing keys");
        }
        self.get().verifying.iter().any(|k| k.kid == kid)
    }

    /// Re-reads the store; swaps the ring only when the set of keys changed.
    pub async fn refresh(&self, store: &dyn Store, secret: &ServerSecret) -> anyhow::Result<()> {
        let stored = store.signing_keys().await?;
        let kids: Vec<String> = stored
            .iter()
            .map(|k| format!("{}:{}", k.kid, k.status.as_str()))
            .collect();
        if kids == self.get().kids {
            return Ok(());
        }
        let keys = build(&stored, secret)?;
        match self.current.write() {
            Ok(mut w) => *w = Arc::new(keys),
            Err(p) => *p.into_inner() = Arc::new(keys),
        }
        Ok(())
    }

    /// Generates a new current key; the old current key stays published as the previous one.
    pub async fn rotate(
        &self,
        store: &dyn Store,
        secret: &ServerSecret,
        rng: &dyn Random,
        now: UnixTime,
    ) -> anyhow::Result<String> {
        let kids = rotate(store, secret, rng, now).await?;
        self.refresh(store, secret).await?;
        Ok(kids.into_iter().next().unwrap_or_default())
    }
}

/// Makes a new current key for every algorithm in use (each current key becomes its
/// algorithm's previous key) and returns their ids, RS256 first. Nodes pick them up on their
/// next refresh.
pub async fn rotate(
    store: &dyn Store,
    secret: &ServerSecret,
    rng: &dyn Random,
    now: UnixTime,
) -> anyhow::Result<Vec<String>> {
    let stored = store.signing_keys().await?;
    let mut kids = Vec::new();
    for alg in Alg::ALL {
        let in_use = stored
            .iter()
            .any(|k| k.status == KeyStatus::Current && k.alg == alg.as_str());
        if in_use || alg == Alg::RS256 {
            let fresh = generate(alg, secret, rng, now)?;
            store.rotate_key(&fresh, now).await?;
            kids.push(fresh.kid);
        }
    }
    Ok(kids)
}

/// SHA-1, for certificate thumbprints only (`x5t`, as RFC 7517 defines it).
pub fn sha1(der: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der)
        .as_ref()
        .to_vec()
}

/// A self-signed X.509 certificate (DER) for a signing key, valid for ten years from `now`.
fn certificate(alg: Alg, kid: &str, pkcs8: &[u8], now: UnixTime) -> anyhow::Result<Vec<u8>> {
    let sign_alg = match alg {
        Alg::RS256 => &rcgen::PKCS_RSA_SHA256,
        Alg::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Alg::EdDSA => &rcgen::PKCS_ED25519,
    };
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.to_vec());
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, sign_alg)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("Tessera signing key {kid}"),
    );
    let start = time::OffsetDateTime::from_unix_timestamp(now)?;
    params.not_before = start;
    params.not_after = start + time::Duration::days(3650);
    Ok(params.self_signed(&pair)?.der().to_vec())
}

fn generate(
    alg: Alg,
    secret: &ServerSecret,
    rng: &dyn Random,
    now: UnixTime,
) -> anyhow::Result<StoredKey> {
    let (key, der) = SigningKey::generate_for(alg, rng)?;
    // A self-signed certificate for the key, as Auth0 publishes one (`x5c`, `x5t` in the JWKS,
    // `cert` in the Management API): some libraries and SDKs read keys only from certificates.
    let cert = certificate(alg, &key.kid, &der, now)?;
    let mut jwk = key.public_jwk();
    jwk["x5c"] = json!([base64::engine::general_purpose::STANDARD.encode(&cert)]);
    jwk["x5t"] = json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha1(&cert)));
    Ok(StoredKey {
        kid: key.kid.clone(),
        alg: alg.as_str().into(),
        private_sealed: secret.seal(rng, SEAL_PURPOSE, &der),
        public_jwk: jwk.to_string(),
        status: KeyStatus::Current,
        created_at: now,
    })
}

fn build(stored: &[StoredKey], secret: &ServerSecret) -> anyhow::Result<Keys> {
    let mut signers = Vec::new();
    for current in stored.iter().filter(|k| k.status == KeyStatus::Current) {
        let alg = Alg::parse(&current.alg).ok_or_else(|| {
            anyhow::anyhow!(
                "signing key {} has an unknown algorithm {:?}",
                current.kid,
                current.alg
            )
        })?;
        let der = secret
            .open(SEAL_PURPOSE, &current.private_sealed)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot open signing key {}: {e} (was the server secret changed?)",
                    current.kid
                )
            })?;
        signers.push(Arc::new(SigningKey::from_pkcs8_for(
            alg,
            &current.kid,
            &der,
        )?));
    }
    let signing = signers
        .iter()
        .find(|k| k.alg == Alg::RS256)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no current RS256 signing key in the store"))?;
    let mut verifying = Vec::new();
    let mut jwks = Vec::new();
    for k in stored {
        let jwk: Value = serde_json::from_str(&k.public_jwk)?;
        verifying.push(VerifyingKey::from_jwk(&jwk)?);
        jwks.push(jwk);
    }
    let doc = serde_json::to_vec(&json!({ "keys": jwks }))?;
    let kids = stored
        .iter()
        .map(|k| format!("{}:{}", k.kid, k.status.as_str()))
        .collect();
    Ok(Keys {
        signing,
        signers,
        verifying,
        jwks: Arc::new(doc),
        kids,
    })
}
