//! Maps keyed by names: exchanges, queues, routing keys.
//!
//! The standard map's `SipHash` resists keys chosen to collide, which an in-process test
//! broker's own names never are; on the publish path it cost more than routing itself. FNV-1a
//! hashes a short name in a few instructions per byte.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from names, hashed with [`Fnv`].
pub(super) type NameMap<V> = HashMap<String, V, BuildHasherDefault<Fnv>>;

/// The 64-bit FNV-1a hash.
#[derive(Clone, Copy, Debug)]
pub(super) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_it_holds() {
        let mut map = NameMap::default();
        map.insert("jobs.work".to_owned(), 1);
        map.insert("jobs.work.err".to_owned(), 2);
        assert_eq!(map.get("jobs.work"), Some(&1));
        assert_eq!(map.get("jobs.work.err"), Some(&2));
        assert_eq!(map.get("jobs"), None);
    }
}
