//! Tessera's HTTP server: the Auth0 passwordless API, OpenID Connect discovery, and the
//! dev mailbox, over the store and delivery crates.

pub mod admin;
pub mod app;
pub mod authz;
pub mod cache;
pub mod clientauth;
pub mod config;
pub mod error;
pub mod files;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod ops;
pub mod otpcheck;
pub mod pages;
pub mod params;
pub mod routes;
pub mod session;
pub mod settings;
pub mod state;
pub mod tls;
pub mod tokens;

pub use app::{Tessera, build, router, serve};
pub use settings::Settings;
