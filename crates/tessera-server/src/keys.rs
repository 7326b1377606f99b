//! The key ring: signing keys loaded from the store, kept parsed in memory.
//!
//! At first start one node generates a key and inserts it; a unique index lets exactly one
//! insert win when several nodes start together, and everyone then loads the winner. Keys are
//! re-read periodically, so a rotation made on one node is published by every node's JWKS.

use std::sync::{Arc, RwLock};

use serde_json::{Value, json};
use tessera_core::UnixTime;
use tessera_core::crypto::ServerSecret;
use tessera_core::jwt::{SigningKey, VerifyingKey};
use tessera_core::rand::Random;
use tessera_store::{KeyStatus, Store, StoredKey};

/// The sealing purpose for private keys at rest.
const SEAL_PURPOSE: &str = "tessera/signing-key/v1";

pub struct Keys {
    pub signing: Arc<SigningKey>,
    pub verifying: Vec<VerifyingKey>,
    /// The JWKS document, rendered once.
    pub jwks: Arc<Vec<u8>>,
    kids: Vec<String>,
}

pub struct KeyRing {
    current: RwLock<Arc<Keys>>,
    /// When an unknown `kid` last made us re-read the store (bounded to once a second).
    last_forced: std::sync::Mutex<Option<std::time::Instant>>,
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
        if !stored.iter().any(|k| k.status == KeyStatus::Current) {
            let fresh = generate(secret, rng, now)?;
            store.insert_first_key(&fresh).await?;
            stored = store.signing_keys().await?;
        }
        let keys = build(&stored, secret)?;
        Ok(KeyRing {
            current: RwLock::new(Arc::new(keys)),
            last_forced: std::sync::Mutex::new(None),
        })
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
        let due = {
            let mut last = match self.last_forced.lock() {
                Ok(l) => l,
                Err(p) => p.into_inner(),
            };
            let due = last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1));
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        if due && let Err(e) = self.refresh(store, secret).await {
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
        let kid = rotate(store, secret, rng, now).await?;
        self.refresh(store, secret).await?;
        Ok(kid)
    }
}

/// Makes a new current key in the store (the current one becomes the previous key) and returns
/// its id. Nodes pick it up on their next refresh.
pub async fn rotate(
    store: &dyn Store,
    secret: &ServerSecret,
    rng: &dyn Random,
    now: UnixTime,
) -> anyhow::Result<String> {
    let fresh = generate(secret, rng, now)?;
    store.rotate_key(&fresh, now).await?;
    Ok(fresh.kid)
}

fn generate(secret: &ServerSecret, rng: &dyn Random, now: UnixTime) -> anyhow::Result<StoredKey> {
    let (key, der) = SigningKey::generate(rng)?;
    Ok(StoredKey {
        kid: key.kid.clone(),
        alg: "RS256".into(),
        private_sealed: secret.seal(rng, SEAL_PURPOSE, &der),
        public_jwk: key.public_jwk().to_string(),
        status: KeyStatus::Current,
        created_at: now,
    })
}

fn build(stored: &[StoredKey], secret: &ServerSecret) -> anyhow::Result<Keys> {
    let current = stored
        .iter()
        .find(|k| k.status == KeyStatus::Current)
        .ok_or_else(|| anyhow::anyhow!("no current signing key in the store"))?;
    let der = secret
        .open(SEAL_PURPOSE, &current.private_sealed)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot open signing key {}: {e} (was the server secret changed?)",
                current.kid
            )
        })?;
    let signing = Arc::new(SigningKey::from_pkcs8(&current.kid, &der)?);
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
        verifying,
        jwks: Arc::new(doc),
        kids,
    })
}
