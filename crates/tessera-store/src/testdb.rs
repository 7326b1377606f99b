//! Throw-away databases for tests and benchmarks: a temp SQLite file, or a fresh PostgreSQL
//! database that is dropped again when the guard goes.
//!
//! The PostgreSQL server is `TESSERA_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). There is no fallback: a test that asks for
//! PostgreSQL fails when the server is missing.

use std::str::FromStr;

use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn admin_url() -> String {
    std::env::var("TESSERA_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string())
}

/// A database that exists for as long as this guard does.
pub struct TestDb {
    pub url: String,
    name: Option<String>,
    _dir: Option<tempfile_like::TempDir>,
}

impl TestDb {
    pub fn sqlite() -> anyhow::Result<TestDb> {
        let dir = tempfile_like::TempDir::new()?;
        let url = format!("sqlite://{}", dir.path().join("tessera.db").display());
        Ok(TestDb {
            url,
            name: None,
            _dir: Some(dir),
        })
    }

    pub async fn postgres() -> anyhow::Result<TestDb> {
        let admin = admin_url();
        let mut bytes = [0u8; 8];
        tessera_core::rand::Random::fill(&tessera_core::rand::SystemRandom, &mut bytes);
        let name = format!("tessera_t_{}", hex(&bytes));
        let mut conn = PgConnectOptions::from_str(&admin)?
            .connect()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "PostgreSQL is required for this test and is not reachable at {admin}: {e}"
                )
            })?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        let url = PgConnectOptions::from_str(&admin)?
            .database(&name)
            .to_url_lossy()
            .to_string();
        Ok(TestDb {
            url,
            name: Some(name),
            _dir: None,
        })
    }

    /// Which backend, by name: "sqlite" or "postgres".
    pub async fn new(backend: &str) -> anyhow::Result<TestDb> {
        match backend {
            "sqlite" => TestDb::sqlite(),
            "postgres" => TestDb::postgres().await,
            other => anyhow::bail!("unknown test backend {other:?}"),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.name.take() else { return };
        // Drop runs inside the test's runtime; use a thread with its own runtime.
        let admin = admin_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    if let Ok(opts) = PgConnectOptions::from_str(&admin)
                        && let Ok(mut c) = opts.connect().await
                    {
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                            .execute(&mut c)
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A minimal temporary directory, so the library needs no test-only dependency.
mod tempfile_like {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> std::io::Result<TempDir> {
            let mut b = [0u8; 8];
            tessera_core::rand::Random::fill(&tessera_core::rand::SystemRandom, &mut b);
            let p = std::env::temp_dir().join(format!("tessera-test-{}", super::hex(&b)));
            std::fs::create_dir_all(&p)?;
            Ok(TempDir(p))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
