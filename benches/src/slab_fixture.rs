//! kmem object-cache fixtures: fake physical memory booted as a kernel
//! would (base arena, `kpages`), the bootstrap caches on the std platform
//! ([`ThreadCpus`]: one exclusive CPU slot per thread), and two caches of one
//! object size, one with magazines and one `NOMAGAZINE` (the ablation).

use kmem_magazine::{MagazineStats, ThreadCpus};
use kmem_physmem::{boot, PhysMem};
use kmem_slab::{CacheBuilder, CacheFlags, Caches, KmemCache};

/// Bytes of fake physical memory behind the caches: far more than the
/// benchmarks hold live (a few thousand objects and their magazines).
pub const RAM_BYTES: usize = 64 << 20;

/// A kmem cache on the std platform.
pub type StdCache<'a> = KmemCache<'a, ThreadCpus>;

/// The two caches [`with_caches`] passes on.
pub struct SlabPair<'c, 'a> {
    /// Magazines on (the default).
    pub mag: &'c StdCache<'a>,
    /// `NOMAGAZINE`: every alloc and free takes the slab layer's lock.
    pub nomag: &'c StdCache<'a>,
}

/// Boots [`RAM_BYTES`] of fake memory, creates the caches `obj<size>`
/// (magazines on) and `obj<size>-nomag` (`NOMAGAZINE`) with slabs from
/// `kpages`, and runs `f` on them. Afterwards checks that every object was
/// freed and the caches are consistent, then destroys them (draining the
/// calling thread's magazines; threads that have exited flushed theirs).
///
/// # Panics
/// Panics if a cache cannot be built, is inconsistent afterwards, or still
/// has objects allocated.
pub fn with_caches<R>(size: usize, f: impl FnOnce(SlabPair<'_, '_>) -> R) -> R {
    let ram = PhysMem::new(RAM_BYTES);
    boot(&ram, |base, kpages| {
        let caches = Caches::new(base, ThreadCpus::global()).expect("kmem slab: bootstrap failed");
        let name = format!("obj{size}");
        let mag = caches
            .create(CacheBuilder::new(&name, size).source(kpages))
            .expect("kmem slab: cache with magazines");
        let nomag = caches
            .create(
                CacheBuilder::new(&format!("{name}-nomag"), size)
                    .source(kpages)
                    .flags(CacheFlags::NOMAGAZINE),
            )
            .expect("kmem slab: NOMAGAZINE cache");
        assert!(mag.magazine_stats().is_some() && nomag.magazine_stats().is_none());
        let r = f(SlabPair {
            mag: &mag,
            nomag: &nomag,
        });
        for c in [&mag, &nomag] {
            c.check()
                .expect("kmem slab: cache inconsistent after the run");
            let st = c.stats();
            assert_eq!(st.buf_in_use, 0, "{}: objects still allocated", c.name());
            assert_eq!(st.bad_frees, 0, "{}: bad frees", c.name());
        }
        mag.destroy().expect("kmem slab: destroy (magazines)");
        nomag.destroy().expect("kmem slab: destroy (NOMAGAZINE)");
        r
    })
}

/// The magazine layer's counters of `cache` (which must have magazines).
///
/// # Panics
/// Panics on a `NOMAGAZINE` cache.
pub fn mag_stats(cache: &StdCache<'_>) -> MagazineStats {
    cache
        .stats()
        .magazines
        .expect("kmem slab: the cache has no magazines")
}

/// One line on what the magazine layer did between two snapshots over
/// `ops` alloc+free pairs: depot exchanges, contended depot locks and
/// resizes per 10^6 pairs, and the fill target at the end.
pub fn mag_summary(before: &MagazineStats, after: &MagazineStats, ops: u64) -> String {
    let per_m = |n: u64| n as f64 * 1e6 / ops.max(1) as f64;
    let exchanges = (after.depot_not_empty_out - before.depot_not_empty_out)
        + (after.depot_empty_out - before.depot_empty_out);
    format!(
        "depot exchanges {:.0} per 10^6 pairs, contended depot locks {:.1} per 10^6 pairs \
         ({} in all), resizes {}, magsize {} -> {} (of {}), magazines allocated {}",
        per_m(exchanges),
        per_m(after.contended - before.contended),
        after.contended - before.contended,
        after.resizes - before.resizes,
        before.magsize,
        after.magsize,
        after.max_magsize,
        after.magazines_allocated - before.magazines_allocated,
    )
}

#[cfg(test)]
mod tests {
    use super::{mag_stats, with_caches};
    use crate::object::{lifo, pair};

    #[test]
    fn caches_round_trip() {
        let allocs = with_caches(64, |c| {
            let before = mag_stats(c.mag);
            let mut held = vec![0usize; 1000];
            for cache in [c.mag, c.nomag] {
                pair(cache);
                lifo(cache, &mut held);
                assert!(held.iter().all(|&o| o % 8 == 0));
            }
            let after = mag_stats(c.mag);
            // The LIFO batch overflows the CPU's magazines into the depot.
            assert!(after.depot_empty_out + after.magazines_allocated > before.magazines_allocated);
            c.mag.stats().allocs
        });
        assert_eq!(allocs, 1001);
    }
}
