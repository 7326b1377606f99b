//! Applications and connections in memory, for the sign-in hot paths (`/passwordless/start` and
//! the OTP grant), checked against the database on every request at no extra statement.
//!
//! Every change to the `clients` or `connections` table, whoever makes it (this node, another
//! node, the CLI, an operator's own SQL), raises `config_version` through database triggers.
//! Each copy here is tagged with the version read *before* it was loaded, so a copy is never
//! newer than its tag says. The hot paths read the current version inside a statement they
//! make anyway (the code's insert, the attempt's update) and compare: when it differs, the
//! request's write is undone (rolled back, or the attempt given back), the copies are dropped,
//! and the request runs again on fresh reads. A change therefore applies to the very next
//! request on every node, as it did when every request read the database.
//!
//! Nothing else uses these copies: every other endpoint still reads the database.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tessera_core::client::Client;
use tessera_core::connection::Connection;
use tessera_store::{Result, Store};

/// Where a hot path takes its application and connection from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// From the in-memory copies; the request must check the version it was given.
    Cached,
    /// From the database (the retry after a version mismatch, and every other endpoint).
    Fresh,
}

#[derive(Default)]
pub struct ConfigCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The version every entry below was loaded at (or after); 0 before the first load.
    version: i64,
    clients: HashMap<String, Arc<Client>>,
    connections: HashMap<String, Arc<Connection>>,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// At most this many entries of each kind are kept: ids come from requests, and only known
/// ones are cached, but an operator could have many applications.
const MAX_ENTRIES: usize = 10_000;

impl ConfigCache {
    /// The application, with the version its copy is tagged with. Unknown ids are not cached.
    pub async fn client(&self, store: &dyn Store, id: &str) -> Result<Option<(Arc<Client>, i64)>> {
        self.load(
            store,
            id,
            |i| &mut i.clients,
            |s| Box::pin(s.get_client(id)),
        )
        .await
    }

    /// The connection, with the version its copy is tagged with.
    pub async fn connection(
        &self,
        store: &dyn Store,
        name: &str,
    ) -> Result<Option<(Arc<Connection>, i64)>> {
        self.load(
            store,
            name,
            |i| &mut i.connections,
            |s| Box::pin(s.get_connection(name)),
        )
        .await
    }

    /// The copy in `map` under `key`, else a read from the store (after reading the version,
    /// which then tags the copy).
    async fn load<'a, T>(
        &self,
        store: &'a dyn Store,
        key: &str,
        map: fn(&mut Inner) -> &mut HashMap<String, Arc<T>>,
        read: impl FnOnce(&'a dyn Store) -> BoxFuture<'a, Result<Option<T>>>,
    ) -> Result<Option<(Arc<T>, i64)>> {
        {
            let mut i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let version = i.version;
            if let Some(hit) = map(&mut i).get(key) {
                return Ok(Some((Arc::clone(hit), version)));
            }
        }
        let version = store.config_version().await?;
        let Some(value) = read(store).await? else {
            return Ok(None);
        };
        let value = Arc::new(value);
        let mut i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if i.version < version {
            i.clear(version);
        }
        if i.version == version {
            let m = map(&mut i);
            m.insert(key.to_string(), Arc::clone(&value));
            if m.len() > MAX_ENTRIES {
                i.clear(version);
            }
        }
        Ok(Some((value, version)))
    }

    /// Tells the cache the version a statement just read. Copies of another version are
    /// dropped.
    pub fn observe(&self, version: i64) {
        let mut i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if i.version != version {
            i.clear(version);
        }
    }
}

impl Inner {
    fn clear(&mut self, version: i64) {
        self.clients.clear();
        self.connections.clear();
        self.version = version;
    }
}
