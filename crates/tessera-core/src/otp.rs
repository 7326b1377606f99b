//! One-time codes: generation and the rules that decide an attempt.
//!
//! A code is `length` decimal digits drawn uniformly from a CSPRNG. It is stored only as a keyed
//! hash ([`crate::crypto::ServerSecret::hash_code`]). One live code exists per identity and
//! connection; issuing a new one replaces the old. Every presented code first increments the
//! stored attempt counter (in the store, atomically, before anything is compared), then
//! [`judge`] decides, in this order: too many attempts, expired, wrong, accepted.

use crate::UnixTime;
use crate::crypto::ct_eq;
use crate::rand::{Random, below};

pub const MIN_LENGTH: u8 = 4;
pub const MAX_LENGTH: u8 = 10;

/// Generates a code of `length` digits (clamped to 4..=10).
pub fn generate(rng: &dyn Random, length: u8) -> String {
    let length = length.clamp(MIN_LENGTH, MAX_LENGTH);
    (0..length)
        .map(|_| char::from(b'0' + below(rng, 10) as u8))
        .collect()
}

/// What the store holds about a pending code, after the attempt counter was incremented.
#[derive(Debug, Clone)]
pub struct PendingCode {
    pub code_hash: Vec<u8>,
    pub client_id: String,
    pub expires_at: UnixTime,
    /// Attempts made so far, including the one being judged.
    pub attempts: i64,
    pub max_attempts: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Wrong,
    Expired,
    TooManyAttempts,
}

/// Decides an attempt. `presented_hash` is the keyed hash of the code the user typed.
/// The hash comparison runs in constant time, and always runs, whatever the other checks say.
pub fn judge(p: &PendingCode, client_id: &str, presented_hash: &[u8], now: UnixTime) -> Verdict {
    let hash_ok = ct_eq(&p.code_hash, presented_hash);
    let client_ok = ct_eq(p.client_id.as_bytes(), client_id.as_bytes());
    if p.attempts > p.max_attempts {
        Verdict::TooManyAttempts
    } else if now >= p.expires_at {
        Verdict::Expired
    } else if hash_ok && client_ok {
        Verdict::Accepted
    } else {
        Verdict::Wrong
    }
}

/// Whether a presented string could be a code at all (digits only, sane length).
pub fn plausible(code: &str) -> bool {
    (1..=32).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::ServerSecret;
    use crate::rand::{SystemRandom, testing::SeqRandom};

    #[test]
    fn codes_have_the_requested_length_and_only_digits() {
        for len in [4u8, 6, 10] {
            let c = generate(&SystemRandom, len);
            assert_eq!(c.len(), len as usize);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
        assert_eq!(generate(&SystemRandom, 2).len(), 4);
        assert_eq!(generate(&SystemRandom, 20).len(), 10);
    }

    #[test]
    fn codes_are_deterministic_for_a_given_rng_and_spread_over_digits() {
        let a = generate(&SeqRandom::new(1), 6);
        let b = generate(&SeqRandom::new(1), 6);
        assert_eq!(a, b);
        let mut seen = [0u32; 10];
        for _ in 0..2000 {
            for d in generate(&SystemRandom, 10).bytes() {
                seen[(d - b'0') as usize] += 1;
            }
        }
        // 20,000 digits: each should appear about 2,000 times.
        assert!(seen.iter().all(|&n| (1500..2500).contains(&n)), "{seen:?}");
    }

    fn pending(secret: &ServerSecret, attempts: i64) -> PendingCode {
        PendingCode {
            code_hash: secret.hash_code("email", "a@example.com", "123456"),
            client_id: "app".into(),
            expires_at: 1_000,
            attempts,
            max_attempts: 3,
        }
    }

    #[test]
    fn judges_attempts_in_order() {
        let s = ServerSecret::new(&[1u8; 32]).unwrap();
        let right = s.hash_code("email", "a@example.com", "123456");
        let wrong = s.hash_code("email", "a@example.com", "654321");
        assert_eq!(
            judge(&pending(&s, 1), "app", &right, 999),
            Verdict::Accepted
        );
        assert_eq!(
            judge(&pending(&s, 3), "app", &right, 999),
            Verdict::Accepted
        );
        assert_eq!(judge(&pending(&s, 1), "app", &wrong, 999), Verdict::Wrong);
        // expiry: valid strictly before expires_at
        assert_eq!(
            judge(&pending(&s, 1), "app", &right, 1_000),
            Verdict::Expired
        );
        assert_eq!(
            judge(&pending(&s, 1), "app", &wrong, 5_000),
            Verdict::Expired
        );
        // the fourth attempt fails even with the right code
        assert_eq!(
            judge(&pending(&s, 4), "app", &right, 999),
            Verdict::TooManyAttempts
        );
        // a code issued for another application does not work here
        assert_eq!(judge(&pending(&s, 1), "other", &right, 999), Verdict::Wrong);
    }

    #[test]
    fn plausibility() {
        assert!(plausible("123456"));
        assert!(!plausible(""));
        assert!(!plausible("12a456"));
        assert!(!plausible(&"1".repeat(33)));
    }
}
