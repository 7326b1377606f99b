//! Migrations: plain SQL files per backend, applied in order, each version once.

pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "rate_limits",
        sql: include_str!("../migrations/sqlite/0002_rate_limits.sql"),
    },
    Migration {
        version: 3,
        name: "browser",
        sql: include_str!("../migrations/sqlite/0003_browser.sql"),
    },
    Migration {
        version: 4,
        name: "blocks",
        sql: include_str!("../migrations/sqlite/0004_blocks.sql"),
    },
    Migration {
        version: 5,
        name: "admin",
        sql: include_str!("../migrations/sqlite/0005_admin.sql"),
    },
    Migration {
        version: 6,
        name: "key_algs",
        sql: include_str!("../migrations/sqlite/0006_key_algs.sql"),
    },
    Migration {
        version: 7,
        name: "hot_paths",
        sql: include_str!("../migrations/sqlite/0007_hot_paths.sql"),
    },
];

pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "rate_limits",
        sql: include_str!("../migrations/postgres/0002_rate_limits.sql"),
    },
    Migration {
        version: 3,
        name: "browser",
        sql: include_str!("../migrations/postgres/0003_browser.sql"),
    },
    Migration {
        version: 4,
        name: "blocks",
        sql: include_str!("../migrations/postgres/0004_blocks.sql"),
    },
    Migration {
        version: 5,
        name: "admin",
        sql: include_str!("../migrations/postgres/0005_admin.sql"),
    },
    Migration {
        version: 6,
        name: "key_algs",
        sql: include_str!("../migrations/postgres/0006_key_algs.sql"),
    },
    Migration {
        version: 7,
        name: "hot_paths",
        sql: include_str!("../migrations/postgres/0007_hot_paths.sql"),
    },
];

pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS tessera_migrations (\
     version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";
