//! A seeded generator and checksum mixing, so every run of a workload does
//! the same work and prints the same checksum whatever the allocator.

/// SplitMix64: small, fast, and good enough to pick sizes and words.
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// One of `items`.
    pub(crate) fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// `min` to `min + spread - 1` words of [`WORDS`] joined by `sep`.
    pub(crate) fn phrase(&mut self, min: u64, spread: u64, sep: &str) -> String {
        let count = min + self.below(spread);
        self.words(count, sep)
    }

    /// `count` words of [`WORDS`] joined by `sep`.
    pub(crate) fn words(&mut self, count: u64, sep: &str) -> String {
        let mut s = String::new();
        for i in 0..count {
            if i > 0 {
                s.push_str(sep);
            }
            s.push_str(self.pick(WORDS));
        }
        s
    }
}

/// SplitMix64's finalizer: a bijective hash of one word.
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Folds `x` into the order-dependent checksum `h`.
pub(crate) fn fold(h: u64, x: u64) -> u64 {
    mix(h ^ x).wrapping_add(x)
}

/// FNV-1a of `bytes`.
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A vocabulary for generated names and text.
pub(crate) const WORDS: &[&str] = &[
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "slab",
    "magazine",
    "depot",
    "arena",
    "quantum",
    "vmem",
    "segment",
    "bufctl",
    "cache",
    "reap",
    "import",
    "span",
    "boundary",
    "tag",
    "kernel",
    "page",
    "object",
    "constructor",
    "quickly",
    "slowly",
    "really",
    "nearly",
    "ordinary",
    "allocation",
    "free",
    "list",
    "hash",
    "tree",
    "queue",
    "thread",
    "channel",
    "parse",
    "token",
    "syntax",
    "regex",
    "matcher",
    "capture",
    "zeta",
];
