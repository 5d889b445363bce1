//! Per-cache statistics and the `::kmastat` report.

use core::fmt;

use kmem_arena::Name;
use kmem_magazine::MagazineStats;

/// A snapshot of one cache's counters.
#[derive(Clone, Copy, Debug)]
pub struct CacheStats {
    /// Cache name.
    pub name: Name,
    /// Object size.
    pub buf_size: usize,
    /// Objects held by users.
    pub buf_in_use: u64,
    /// Objects in all slabs.
    pub buf_total: u64,
    /// Objects out of slabs: held by users or cached in magazines.
    pub slab_busy: u64,
    /// Bytes of slabs taken from the source.
    pub memory_in_use: usize,
    /// Slabs.
    pub slabs: usize,
    /// Slabs with no object out (what `reap` gives back).
    pub empty_slabs: usize,
    /// Slabs with some objects out and some free (allocations take from
    /// the fullest first).
    pub partial_slabs: usize,
    /// Slabs created.
    pub slab_creates: u64,
    /// Slabs returned to the source.
    pub slab_destroys: u64,
    /// Allocations that succeeded.
    pub allocs: u64,
    /// Of those, the ones the slab layer served itself (the magazines
    /// missed, or the cache has none).
    pub direct_allocs: u64,
    /// Allocations that failed (source exhausted or constructor failed).
    pub alloc_fails: u64,
    /// Constructor failures.
    pub ctor_fails: u64,
    /// Frees refused as bad (double, wrong cache, foreign, interior,
    /// overrun).
    pub bad_frees: u64,
    /// Debug mode's reports (bad frees, overruns, writes after free).
    pub reports: u64,
    /// Allocations refused, and frees deferred or refused, because they
    /// came from a signal or interrupt handler that interrupted an
    /// operation of their context.
    pub reentrant: u64,
    /// Calls of the cache's shrinker ([`CacheReclaim`](crate::CacheReclaim)).
    pub reclaim_calls: u64,
    /// Objects held in [`Reserve`](crate::Reserve)s now (allocated, counted
    /// in `buf_in_use`).
    pub reserved: u64,
    /// Metadata (slab buffers, tables) the arena refused to take back: 0
    /// unless something corrupted the cache.
    pub meta_errors: u64,
    /// Chains of the hash (slab bases, or bufctls).
    pub hash_chains: usize,
    /// The magazine layer's counters, unless `NOMAGAZINE`.
    pub magazines: Option<MagazineStats>,
}

impl CacheStats {
    /// Writes the report's header line.
    pub fn header(w: &mut impl fmt::Write) -> fmt::Result {
        writeln!(
            w,
            "{:<24} {:>8} {:>10} {:>10} {:>13} {:>13} {:>6} {:>4} {:>5} {:>5} {:>9} {:>8} {:>6} {:>8} {:>8}",
            "cache name",
            "buf size",
            "buf in use",
            "buf total",
            "memory in use",
            "alloc succeed",
            "fail",
            "mag",
            "full",
            "empty",
            "contended",
            "trimmed",
            "purged",
            "reclaims",
            "reserved"
        )
    }

    /// Writes this cache's line of the report.
    pub fn row(&self, w: &mut impl fmt::Write) -> fmt::Result {
        write!(
            w,
            "{:<24} {:>8} {:>10} {:>10} {:>13} {:>13} {:>6}",
            self.name.as_str(),
            self.buf_size,
            self.buf_in_use,
            self.buf_total,
            self.memory_in_use,
            self.allocs,
            self.alloc_fails
        )?;
        match &self.magazines {
            Some(m) => writeln!(
                w,
                " {:>4} {:>5} {:>5} {:>9} {:>8} {:>6} {:>8} {:>8}",
                m.magsize,
                m.not_empty,
                m.empty,
                m.contended,
                m.magazines_trimmed,
                m.purge_slots_taken + m.purge_requests_honoured,
                self.reclaim_calls,
                self.reserved
            ),
            None => writeln!(
                w,
                " {:>4} {:>5} {:>5} {:>9} {:>8} {:>6} {:>8} {:>8}",
                "-", "-", "-", "-", "-", "-", self.reclaim_calls, self.reserved
            ),
        }
    }
}
