//! Randomness, passed in. Production uses the operating system's CSPRNG through aws-lc.

use base64::Engine as _;

/// A source of cryptographically secure random bytes.
pub trait Random: Send + Sync + 'static {
    fn fill(&self, dest: &mut [u8]);
}

/// The system CSPRNG.
///
/// aws-lc's generator costs more per call than per byte (each call mixes in fresh input from
/// the CPU's generator), and a sign-in asks it for a dozen small pieces (ids, a code, nonces).
/// So requests of up to [`BUFFERED_UP_TO`] bytes are served from a per-thread block of
/// [`BLOCK`] bytes taken from it in one call: the same generator's output, handed out once
/// each, and wiped from the block as it is handed out. Larger requests go to it directly.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRandom;

/// The size of a thread's block of random bytes.
const BLOCK: usize = 1024;
/// Requests up to this size are served from the block.
const BUFFERED_UP_TO: usize = 64;

/// A thread's random bytes not yet handed out: `bytes[used..]`.
struct Block {
    bytes: [u8; BLOCK],
    used: usize,
}

thread_local! {
    static BLOCK_OF_THREAD: std::cell::RefCell<Block> =
        const { std::cell::RefCell::new(Block { bytes: [0; BLOCK], used: BLOCK }) };
}

fn system_fill(dest: &mut [u8]) {
    // aws-lc's RNG only fails when the OS has no entropy source; nothing sensible can go on.
    if aws_lc_rs::rand::fill(dest).is_err() {
        std::process::abort();
    }
}

impl Random for SystemRandom {
    fn fill(&self, dest: &mut [u8]) {
        if dest.len() > BUFFERED_UP_TO {
            return system_fill(dest);
        }
        BLOCK_OF_THREAD.with(|b| {
            let mut b = b.borrow_mut();
            if BLOCK - b.used < dest.len() {
                system_fill(&mut b.bytes);
                b.used = 0;
            }
            let (from, to) = (b.used, b.used + dest.len());
            dest.copy_from_slice(&b.bytes[from..to]);
            b.bytes[from..to].fill(0);
            b.used = to;
        })
    }
}

/// A 24-character lowercase hex id, the shape Auth0 uses for `_id` and user ids.
pub fn hex_id(rng: &dyn Random) -> String {
    let mut b = [0u8; 12];
    rng.fill(&mut b);
    hex24(&b)
}

/// Twelve bytes as 24 lowercase hex digits, as `hex::encode` writes them, but in one
/// allocation: `hex::encode` collects an iterator of `char`s, which cost about 800
/// instructions an id, and a sign-in makes six (callgrind, bench/README.md, ninth section).
fn hex24(b: &[u8; 12]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(24);
    for byte in b {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// A 24-character lowercase hex id, like [`hex_id`], that sorts by creation time: 48 bits of
/// milliseconds since the Unix epoch, then 48 random bits (the layout of a UUIDv7, in the
/// shape of an Auth0 id; Auth0's own ids, MongoDB ObjectIds, also begin with their time).
///
/// For the keys of rows written on every sign-in (users, codes, outbox messages, events): a
/// new key lands at the end of its index, on a page the last insert already changed, where a
/// random key lands on a page of its own anywhere in the index. On SQLite every changed page
/// is written whole to the log at each commit, so random keys cost a page (4 KiB) each.
/// An ordered id says when it was made, so it is for identifiers only, never for a secret or
/// a bearer value (use [`token`]); 48 random bits keep ids made in the same millisecond apart
/// (a collision among 1,000 ids in one millisecond: about 2 in a billion, and the key's
/// uniqueness constraint refuses it).
pub fn ordered_id(now_ms: i64, rng: &dyn Random) -> String {
    let mut b = [0u8; 12];
    b[..6].copy_from_slice(&now_ms.clamp(0, (1 << 48) - 1).to_be_bytes()[2..]);
    rng.fill(&mut b[6..]);
    hex24(&b)
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
    fn ids_are_written_as_hex_encode_writes_them() {
        for start in (0..=255u8).step_by(12) {
            let b: [u8; 12] = std::array::from_fn(|i| start.wrapping_add(i as u8));
            assert_eq!(hex24(&b), hex::encode(b));
        }
    }

    #[test]
    fn ordered_ids_have_the_auth0_shape_and_sort_by_time() {
        let now = 1_765_000_000_123;
        let id = ordered_id(now, &SystemRandom);
        assert_eq!(id.len(), 24);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(&id[..12], format!("{now:012x}"));
        // Random within a millisecond, ordered across milliseconds, whatever the random part.
        assert_ne!(ordered_id(now, &SystemRandom), id);
        let later = ordered_id(now + 1, &testing::SeqRandom::new(0));
        let earlier = ordered_id(now, &testing::SeqRandom::new(255));
        assert!(earlier < later, "{earlier} < {later}");
        let ids: Vec<String> = (0..100)
            .map(|i| ordered_id(now + i, &SystemRandom))
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        // Out of range times are clamped, not wrapped.
        assert_eq!(&ordered_id(-5, &SystemRandom)[..12], "000000000000");
        assert_eq!(&ordered_id(i64::MAX, &SystemRandom)[..12], "ffffffffffff");
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
    fn the_block_hands_out_each_byte_once_and_wipes_it() {
        // Across refills of the block, small and large requests, no two 16-byte pieces are
        // the same (a repeat would be a byte handed out twice).
        let mut seen = std::collections::HashSet::new();
        for i in 0..10 * BLOCK / 16 {
            let mut b = [0u8; 16];
            SystemRandom.fill(&mut b);
            assert!(seen.insert(b), "piece {i} repeated");
            if i % 7 == 0 {
                let mut big = [0u8; BUFFERED_UP_TO + 1];
                SystemRandom.fill(&mut big);
                assert!(big.iter().any(|&x| x != 0));
            }
        }
        BLOCK_OF_THREAD.with(|b| {
            let b = b.borrow();
            assert!(
                b.bytes[..b.used].iter().all(|&x| x == 0),
                "handed-out bytes are wiped"
            );
        });
        // Every byte value comes up, so the pieces are not mostly the wiped zeros.
        let mut counts = [0u32; 256];
        for piece in &seen {
            for &x in piece {
                counts[x as usize] += 1;
            }
        }
        assert!(counts.iter().all(|&c| c > 0));
        let zeros = counts[0] as f64 / (seen.len() * 16) as f64;
        assert!(zeros < 0.01, "{zeros}");
    }

    #[test]
    fn below_stays_in_range() {
        for _ in 0..1000 {
            assert!(below(&SystemRandom, 10) < 10);
        }
    }
}
