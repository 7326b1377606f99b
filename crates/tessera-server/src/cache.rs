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
use std::sync::{Arc, RwLock};

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
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The version every entry below was loaded at (or after); 0 before the first load.
    version: i64,
    clients: HashMap<String, Arc<Client>>,
    connections: HashMap<String, Arc<Connection>>,
}

/// At most this many entries of each kind are kept: ids come from requests, and only known
/// ones are cached, but an operator could have many applications.
const MAX_ENTRIES: usize = 10_000;

impl ConfigCache {
    /// The application, with the version its copy is tagged with. Unknown ids are not cached.
    pub async fn client(&self, store: &dyn Store, id: &str) -> Result<Option<(Arc<Client>, i64)>> {
        if let Some(hit) = self.get(|i| i.clients.get(id).cloned()) {
            return Ok(Some(hit));
        }
        let version = store.config_version().await?;
        let Some(client) = store.get_client(id).await? else {
            return Ok(None);
        };
        let client = Arc::new(client);
        self.put(version, |i| {
            i.clients.insert(id.to_string(), Arc::clone(&client));
            i.clients.len()
        });
        Ok(Some((client, version)))
    }

    /// The connection, with the version its copy is tagged with.
    pub async fn connection(
        &self,
        store: &dyn Store,
        name: &str,
    ) -> Result<Option<(Arc<Connection>, i64)>> {
        if let Some(hit) = self.get(|i| i.connections.get(name).cloned()) {
            return Ok(Some(hit));
        }
        let version = store.config_version().await?;
        let Some(connection) = store.get_connection(name).await? else {
            return Ok(None);
        };
        let connection = Arc::new(connection);
        self.put(version, |i| {
            i.connections
                .insert(name.to_string(), Arc::clone(&connection));
            i.connections.len()
        });
        Ok(Some((connection, version)))
    }

    /// Tells the cache the version a statement just read. Copies of another version are
    /// dropped.
    pub fn observe(&self, version: i64) {
        let mut i = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if i.version != version {
            i.clients.clear();
            i.connections.clear();
            i.version = version;
        }
    }

    fn get<T>(&self, find: impl FnOnce(&Inner) -> Option<Arc<T>>) -> Option<(Arc<T>, i64)> {
        let i = self.inner.read().unwrap_or_else(|e| e.into_inner());
        find(&i).map(|v| (v, i.version))
    }

    /// Keeps a copy loaded at `version`, unless the cache has seen another version since the
    /// load began (a copy is only ever tagged with a version read before it).
    fn put(&self, version: i64, insert: impl FnOnce(&mut Inner) -> usize) {
        let mut i = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if i.version < version {
            i.clients.clear();
            i.connections.clear();
            i.version = version;
        }
        if i.version == version && insert(&mut i) > MAX_ENTRIES {
            i.clients.clear();
            i.connections.clear();
        }
    }
}
