//! The deterministic randomness of the tests and the payload rule they
//! share with `ringraft-logtool stress`.

use bytes::Bytes;
use ringraft::core::{Membership, NodeId, Payload};
use ringraft::storage::record::encode_membership;

/// splitmix64's finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seeded generator (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The payload the stress tool writes for (group, index, term); an
/// independent copy of the rule documented in `bin/ringraft-logtool.rs`.
/// The tool prints the CRC of every payload it acknowledges and the parser
/// below compares it with this one, so the two cannot drift apart unseen.
pub fn derived_payload(seed: u64, group: u64, index: u64, term: u64, max_bytes: u64) -> Payload {
    let h = mix(seed ^ mix(group ^ mix(index ^ mix(term))));
    match h % 32 {
        0 => Payload::Noop,
        1 => {
            let mut m = Membership::new((1..=1 + (h >> 8) % 5).map(NodeId));
            if (h >> 12) & 1 == 1 {
                m.learners.insert(NodeId(100 + (h >> 16) % 7));
            }
            Payload::Config(m)
        }
        _ => {
            let len = (mix(h ^ 1) % (max_bytes + 1)) as usize;
            let mut out = Vec::with_capacity(len + 8);
            let mut s = h;
            while out.len() < len {
                s = mix(s);
                out.extend_from_slice(&s.to_le_bytes());
            }
            out.truncate(len);
            Payload::Normal(Bytes::from(out))
        }
    }
}

/// CRC32C of the bytes a record of this payload stores.
pub fn payload_crc(p: &Payload) -> u32 {
    match p {
        Payload::Normal(b) => crc32c::crc32c(b),
        Payload::Noop => crc32c::crc32c(&[]),
        Payload::Config(m) => crc32c::crc32c(&encode_membership(m)),
    }
}
