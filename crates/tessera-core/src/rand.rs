//! Randomness, passed in. Production uses the operating system's CSPRNG through aws-lc.

use base64::Engine as _;

/// A source of cryptographically secure random bytes.
pub trait Random: Send + Sync + 'static {
    fn fill(&self, dest: &mut [u8]);
}

/// The system CSPRNG.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRandom;

impl Random for SystemRandom {
    fn fill(&self, dest: &mut [u8]) {
        // aws-lc's RNG only fails when the OS has no entropy source; nothing sensible can go on.
        if aws_lc_rs::rand::fill(dest).is_err() {
            std::process::abort();
        }
    }
}

/// A 24-character lowercase hex id, the shape Auth0 uses for `_id` and user ids.
pub fn hex_id(rng: &dyn Random) -> String {
    let mut b = [0u8; 12];
    rng.fill(&mut b);
    hex::encode(b)
}

/// An unguessable bearer token: 32 random bytes, base64url without padding.
pub fn token(rng: &dyn Random) -> String {
    let mut b = [0u8; 32];
    rng.fill(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A uniformly distributed integer below `bound` (rejection sampling, no modulo bias).
pub fn below(rng: &dyn Random, bound: u32) -> u32 {
    debug_assert!(bound > 0);
    let zone = u32::MAX - (u32::MAX % bound);
    loop {
        let mut b = [0u8; 4];
        rng.fill(&mut b);
        let v = u32::from_le_bytes(b);
        if v < zone {
            return v % bound;
        }
    }
}

#[cfg(test)]
pub mod testing {
    //! A deterministic generator for tests.
    use super::Random;
    use std::sync::Mutex;

    /// Repeats a counter-based byte stream; deterministic, not secure.
    pub struct SeqRandom(pub Mutex<u8>);

    impl SeqRandom {
        pub fn new(seed: u8) -> Self {
            SeqRandom(Mutex::new(seed))
        }
    }

    impl Random for SeqRandom {
        fn fill(&self, dest: &mut [u8]) {
            let mut s = self.0.lock().unwrap();
            for b in dest {
                *s = s.wrapping_mul(31).wrapping_add(7);
                *b = *s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_auth0_shape() {
        let id = hex_id(&SystemRandom);
        assert_eq!(id.len(), 24);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(hex_id(&SystemRandom), id);
    }

    #[test]
    fn tokens_are_43_chars_of_base64url() {
        let t = token(&SystemRandom);
        assert_eq!(t.len(), 43);
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn below_stays_in_range() {
        for _ in 0..1000 {
            assert!(below(&SystemRandom, 10) < 10);
        }
    }
}
