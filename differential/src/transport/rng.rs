//! A small seeded random generator: `SplitMix64`, so a seed printed by one run regenerates the
//! same scenario on any machine, with no dependency whose stream could change between versions.

/// `SplitMix64` (Steele, Lea and Flood): 64 bits of state, every seed a full-period stream.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded with `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        // The modulo bias is below 2^-50 for the small ranges used here.
        usize::try_from(self.next_u64() % n as u64).unwrap_or(0)
    }

    /// A number in `low..=high`.
    pub fn range(&mut self, low: u32, high: u32) -> u32 {
        let span = usize::try_from(high.saturating_sub(low)).unwrap_or(0) + 1;
        low + u32::try_from(self.below(span)).unwrap_or(0)
    }

    /// `true` with probability `percent` in 100.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.range(0, 99) < percent
    }

    /// One of `items`, or `None` when there are none.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.below(items.len()))
        }
    }

    /// The seed of the `index`-th case of a run seeded with `run`: each case gets its own
    /// stream, so one case can be replayed alone from its own seed.
    #[must_use]
    pub fn case_seed(run: u64, index: u64) -> u64 {
        Self::new(run ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93)).next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn a_seed_gives_the_same_stream_every_time() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let first: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        assert_eq!(first, (0..4).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(first[0], first[1]);
    }

    #[test]
    fn ranges_stay_inside_their_bounds() {
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let n = rng.range(3, 5);
            assert!((3..=5).contains(&n));
            assert!(rng.below(4) < 4);
        }
        assert_eq!(rng.below(0), 0);
    }
}
