//! Tessera's domain: the types and rules of passwordless sign-in, free of IO.
//!
//! Nothing here talks to a network, a database or a framework. Time (`now`, in Unix seconds)
//! and randomness (a [`rand::Random`]) are passed in, so every rule is testable without sleeping.

pub mod client;
pub mod clock;
pub mod connection;
pub mod crypto;
pub mod email;
pub mod jwt;
pub mod net;
pub mod otp;
pub mod phone;
pub mod rand;
pub mod scope;
pub mod user;

pub use clock::UnixTime;
