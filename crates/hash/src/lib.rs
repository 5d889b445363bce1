//! Golden-ratio multiplicative hashing and the load policy of a chained hash
//! table, as the kmem allocator stack uses them for its allocated-segment and
//! buffer-address tables.
//!
//! Keys are 64-bit integers (addresses, resource values). [`hash_u64`]
//! multiplies by 2^64/φ (`0x61C8864680B583EB`, Linux's `GOLDEN_RATIO_64`) and
//! keeps the top `bits` bits of the product, so keys that differ only in their
//! high bits, or page-aligned keys whose low bits are all zero, still spread
//! over every chain.
//!
//! [`AddrHash`] is the chained hash both layers keep their allocated
//! things in: intrusive (the chains run through the nodes, linked as the
//! owner's [`Links`] say), 64 chains inline (the arena's) or none (the slab
//! layer's, whose caches stay small), larger tables installed by the owner
//! and rehashed into a few chains per operation.
//!
//! [`LoadPolicy`] tracks a table of `2^bits` chains and its item count. It
//! starts at [`INIT_BITS`] (64 chains), asks to double above a load of 0.65
//! items per chain, never grows past [`MAX_BITS`] (2^31 chains), and asks to
//! shrink when the load falls under a quarter of that limit. The policy only
//! *answers*; the owner of the table allocates the new bucket array outside
//! its lock and then installs it ([`AddrHash::install`]).
//!
//! ```
//! use kmem_hash::{hash_u64, LoadPolicy, INIT_BITS};
//!
//! let mut policy = LoadPolicy::new();
//! assert_eq!(policy.chains(), 64);
//! let chain = hash_u64(0x1000, policy.bits());
//! assert!(chain < 64);
//! for _ in 0..42 {
//!     policy.inc();
//! }
//! assert_eq!(policy.resize_target(), Some(INIT_BITS + 1));
//! ```
#![no_std]
#![forbid(unsafe_code)]

mod chains;

pub use chains::{AddrHash, Found, Links, INIT_CHAINS, STEP_CHAINS};

/// 2^64 divided by the golden ratio, rounded to odd.
pub const GOLDEN_RATIO_64: u64 = 0x61C8_8646_80B5_83EB;

/// Bits of the initial table: 64 chains.
pub const INIT_BITS: u32 = 6;

/// Bits of the largest table: 2^31 chains.
pub const MAX_BITS: u32 = 31;

/// Load limit numerator: a table may hold `chains * 13 / 20` items (0.65 per chain).
const LOAD_NUM: u64 = 13;
/// Load limit denominator.
const LOAD_DEN: u64 = 20;

/// Hashes `key` to a chain index in `0..2^bits`.
///
/// `bits` of zero maps every key to chain 0; `bits` above 64 is treated as 64.
#[inline]
pub fn hash_u64(key: u64, bits: u32) -> u64 {
    if bits == 0 {
        return 0;
    }
    let bits = bits.min(64);
    key.wrapping_mul(GOLDEN_RATIO_64) >> (64 - bits)
}

/// Hashes an address-sized key to a chain index in `0..2^bits`.
#[inline]
pub fn hash_usize(key: usize, bits: u32) -> usize {
    hash_u64(key as u64, bits) as usize
}

/// Hashes a pointer's address to a chain index in `0..2^bits`.
#[inline]
pub fn hash_ptr<T: ?Sized>(ptr: *const T, bits: u32) -> usize {
    hash_usize(ptr.cast::<u8>() as usize, bits)
}

/// The load policy of a chained table with a power-of-two number of chains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadPolicy {
    bits: u32,
    items: u64,
    /// The item count above which the table should grow (`u64::MAX` at
    /// [`MAX_BITS`]), kept so the check on an insert is one comparison.
    grow_above: u64,
}

impl Default for LoadPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl LoadPolicy {
    /// A policy for the initial table of `2^INIT_BITS` chains, holding nothing.
    pub const fn new() -> Self {
        Self {
            bits: INIT_BITS,
            items: 0,
            grow_above: Self::grow_limit(INIT_BITS),
        }
    }

    const fn grow_limit(bits: u32) -> u64 {
        if bits < MAX_BITS {
            Self::load_limit(bits)
        } else {
            u64::MAX
        }
    }

    /// The chain of `key` in the current table: [`hash_u64`] with the
    /// policy's bits (never 0, so no test for it).
    #[inline]
    pub const fn chain_of(&self, key: u64) -> usize {
        (key.wrapping_mul(GOLDEN_RATIO_64) >> (64 - self.bits)) as usize
    }

    /// log2 of the current number of chains.
    #[inline]
    pub const fn bits(&self) -> u32 {
        self.bits
    }

    /// The current number of chains.
    #[inline]
    pub const fn chains(&self) -> usize {
        1usize << self.bits
    }

    /// Items currently in the table.
    #[inline]
    pub const fn items(&self) -> u64 {
        self.items
    }

    /// Records one inserted item.
    #[inline]
    pub fn inc(&mut self) {
        self.items += 1;
    }

    /// Records one removed item.
    ///
    /// # Panics
    /// Panics if the table is already empty (a bookkeeping bug in the caller).
    #[inline]
    pub fn dec(&mut self) {
        self.items = self
            .items
            .checked_sub(1)
            .expect("kmem-hash: item count underflow");
    }

    /// The most items `2^bits` chains hold before the policy asks to grow.
    #[inline]
    pub const fn load_limit(bits: u32) -> u64 {
        (1u64 << bits) * LOAD_NUM / LOAD_DEN
    }

    /// True when the load is above 0.65 items per chain and the table may still grow.
    #[inline]
    pub fn needs_grow(&self) -> bool {
        self.items > self.grow_above
    }

    /// True when the load is under a quarter of the limit and the table is
    /// larger than the initial one.
    #[inline]
    pub fn needs_shrink(&self) -> bool {
        self.bits > INIT_BITS && self.items < Self::load_limit(self.bits) / 4
    }

    /// The table size (in bits) the owner should move to, if any.
    ///
    /// Growth doubles the table, as Akaros' `hash_helper` does. Shrinking
    /// (done only off the allocation path, in a rescale) goes straight to the
    /// smallest table at or above [`INIT_BITS`] whose limit holds twice the
    /// current items, so a table that just shrank does not grow again at once.
    pub fn resize_target(&self) -> Option<u32> {
        if self.needs_grow() {
            return Some(self.bits + 1);
        }
        if self.needs_shrink() {
            let mut bits = INIT_BITS;
            while bits < self.bits && Self::load_limit(bits) < self.items.saturating_mul(2) {
                bits += 1;
            }
            if bits < self.bits {
                return Some(bits);
            }
        }
        None
    }

    /// Installs a table of `2^bits` chains (after the owner rehashed into it).
    ///
    /// # Panics
    /// Panics if `bits` is outside `INIT_BITS..=MAX_BITS`.
    pub fn set_bits(&mut self, bits: u32) {
        assert!(
            (INIT_BITS..=MAX_BITS).contains(&bits),
            "kmem-hash: table of 2^{bits} chains is outside the policy's range"
        );
        self.bits = bits;
        self.grow_above = Self::grow_limit(bits);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    #[test]
    fn chain_of_is_hash_u64_at_the_policy_bits() {
        let mut p = LoadPolicy::new();
        for bits in [INIT_BITS, 12, MAX_BITS] {
            p.set_bits(bits);
            for key in [0, 1, 0x1000, u64::MAX, 0x1234_5678_9abc_def0] {
                assert_eq!(p.chain_of(key), hash_u64(key, bits) as usize);
            }
        }
    }

    #[test]
    fn zero_bits_maps_to_chain_zero() {
        assert_eq!(hash_u64(u64::MAX, 0), 0);
        assert_eq!(hash_u64(12345, 0), 0);
    }

    #[test]
    fn keeps_top_bits_of_golden_product() {
        let key = 0x1234_5678_9abc_def0u64;
        let product = key.wrapping_mul(GOLDEN_RATIO_64);
        assert_eq!(hash_u64(key, 10), product >> 54);
        assert_eq!(hash_u64(key, 64), product);
        assert_eq!(hash_u64(key, 99), product);
        assert!(hash_u64(key, 31) < 1 << 31);
    }

    /// Page-aligned keys must spread evenly: a chi-squared test over 64..4096
    /// chains, with keys at 4 KiB strides as an arena of pages produces.
    #[test]
    fn page_aligned_keys_spread_evenly() {
        for bits in [6u32, 8, 10, 12] {
            let chains = 1usize << bits;
            let keys = chains * 16;
            let mut counts = vec![0u32; chains];
            for i in 0..keys {
                let key = 0xffff_8000_0000_0000u64 + (i as u64) * 4096;
                counts[hash_u64(key, bits) as usize] += 1;
            }
            let expected = (keys / chains) as f64;
            let chi2: f64 = counts
                .iter()
                .map(|&c| {
                    let d = c as f64 - expected;
                    d * d / expected
                })
                .sum();
            // Degrees of freedom = chains - 1; a uniform spread gives chi2 close
            // to that. Fail well above it (3x), and fail any empty chain.
            assert!(
                chi2 < 3.0 * chains as f64,
                "bits {bits}: chi2 {chi2} too high"
            );
            assert!(counts.iter().all(|&c| c > 0), "bits {bits}: empty chain");
            let max = *counts.iter().max().unwrap();
            assert!(max as f64 <= expected * 2.5, "bits {bits}: chain of {max}");
        }
    }

    #[test]
    fn pointer_hash_matches_integer_hash() {
        let x = 5u64;
        let p = &x as *const u64;
        assert_eq!(hash_ptr(p, 12), hash_usize(p as usize, 12));
    }

    #[test]
    fn grows_above_load_065() {
        let mut p = LoadPolicy::new();
        assert_eq!(LoadPolicy::load_limit(INIT_BITS), 41);
        for _ in 0..41 {
            p.inc();
        }
        assert!(!p.needs_grow());
        assert_eq!(p.resize_target(), None);
        p.inc();
        assert!(p.needs_grow());
        assert_eq!(p.resize_target(), Some(7));
        p.set_bits(7);
        assert_eq!(p.chains(), 128);
        assert!(!p.needs_grow());
    }

    #[test]
    fn never_grows_past_max() {
        let mut p = LoadPolicy::new();
        p.set_bits(MAX_BITS);
        p.items = u64::MAX / 2;
        assert!(!p.needs_grow());
        assert_eq!(p.resize_target(), None);
    }

    #[test]
    fn shrinks_with_hysteresis_and_not_below_initial() {
        let mut p = LoadPolicy::new();
        assert!(!p.needs_shrink());
        p.set_bits(12); // limit 2662
        for _ in 0..100 {
            p.inc();
        }
        assert!(p.needs_shrink());
        // Smallest table whose limit holds 200 items: 2^9 (limit 332).
        assert_eq!(p.resize_target(), Some(9));
        p.set_bits(9);
        assert_eq!(p.resize_target(), None);
        while p.items() > 0 {
            p.dec();
        }
        assert_eq!(p.resize_target(), Some(INIT_BITS));
        p.set_bits(INIT_BITS);
        assert_eq!(p.resize_target(), None);
    }

    #[test]
    #[should_panic(expected = "underflow")]
    fn dec_on_empty_panics() {
        LoadPolicy::new().dec();
    }

    #[test]
    #[should_panic(expected = "outside the policy's range")]
    fn set_bits_out_of_range_panics() {
        LoadPolicy::new().set_bits(40);
    }
}
