//! B14, after Linux's `slab_test`: bursts of 10^4 allocations of 64 bytes,
//! then the 10^4 frees in the order they were allocated (FIFO), on one
//! thread. Contenders: the 64-byte kmem cache, its `NOMAGAZINE` ablation,
//! both again with FIFO refill (partial slabs taken in the order they
//! became partial, `CacheBuilder::fifo_partial_slabs`, instead of fullest
//! first), and every `GlobalAlloc` peer. Unit: ns per object (an
//! allocation and its free). One note per kmem contender gives what its
//! layers did over the run: depot lock acquisitions, depot exchanges and
//! batch refills per 10^6
//! objects, objects the slab layer handed out directly, and its slabs
//! (partial ones too) at the end. (`slab_test`'s other parts: alloc/free
//! pairs are B1, every thread at once is B3, a remote free is B4.)

use core::alloc::{GlobalAlloc, Layout};
use core::hint::black_box;
use core::ptr;

use kmem_slab::CacheStats;

use crate::interleave::{self, Contender};
use crate::object::ObjectAlloc;
use crate::results::{Bench, Results};
use crate::slab_fixture::StdCache;
use crate::suite::stack::{Footprint, Stack, Visit};
use crate::suite::Config;

/// Id and title.
pub const BENCH: Bench = Bench {
    id: "B14",
    title: "slab_test bursts: 10^4 allocations then 10^4 frees (64 B, 1 thread)",
};

/// Objects per burst.
pub const BURST: usize = 10_000;

/// The object size.
const SIZE: usize = 64;

/// One burst on a kmem cache: `held.len()` allocations, then their frees
/// in allocation order.
fn cache_burst(c: &StdCache<'_>, held: &mut [usize]) {
    for slot in held.iter_mut() {
        *slot = ObjectAlloc::alloc(c);
    }
    black_box(&mut *held);
    for &obj in held.iter() {
        // SAFETY: allocated above, each freed once.
        unsafe { ObjectAlloc::free(c, obj) };
    }
}

/// One burst through a `GlobalAlloc`.
fn heap_burst<A: GlobalAlloc + ?Sized>(a: &A, held: &mut [*mut u8]) {
    let l = Layout::from_size_align(SIZE, 8).expect("layout");
    for slot in held.iter_mut() {
        // SAFETY: a non-zero-size layout.
        let p = unsafe { a.alloc(l) };
        assert!(!p.is_null(), "B14: allocation failed");
        *slot = p;
    }
    black_box(&mut *held);
    for &p in held.iter() {
        // SAFETY: allocated above with `l`, each freed once.
        unsafe { a.dealloc(p, l) };
    }
}

struct Peers<'v, 'c> {
    cs: &'v mut Vec<Contender<'c>>,
}

impl<'c> Visit<'c> for Peers<'_, 'c> {
    fn visit<A: GlobalAlloc + Sync + 'c>(
        &mut self,
        name: &'static str,
        a: &'c A,
        _: Footprint<'c>,
        slow: bool,
    ) {
        if slow {
            // Linear per operation with 10^4 live objects.
            return;
        }
        let mut held = vec![ptr::null_mut(); BURST];
        self.cs
            .push(Contender::new(name, move || heap_burst(a, &mut held)));
    }
}

/// A kmem contender's counters before the run.
struct Before<'s, 'c> {
    label: &'static str,
    cache: &'s StdCache<'c>,
    stats: CacheStats,
}

impl<'s, 'c> Before<'s, 'c> {
    fn take(label: &'static str, cache: &'s StdCache<'c>) -> Self {
        Self {
            label,
            cache,
            stats: cache.stats(),
        }
    }

    /// What the cache's layers did since: objects, depot lock
    /// acquisitions and depot exchanges (a full or empty magazine traded)
    /// and batch refills per 10^6 objects, objects the slab layer handed
    /// out directly, and its slabs at the end.
    fn note(&self) -> String {
        let after = self.cache.stats();
        let objects = (after.allocs - self.stats.allocs).max(1);
        let per_m = |n: u64| n as f64 * 1e6 / objects as f64;
        let mags = match (self.stats.magazines, after.magazines) {
            (Some(b), Some(a)) => {
                let exchanges = (a.depot_not_empty_out - b.depot_not_empty_out)
                    + (a.depot_empty_out - b.depot_empty_out);
                format!(
                    "depot locks {:.0} and exchanges {:.0} per 10^6 objects, contended \
                     depot locks {}, batch refills {:.0} per 10^6 objects, ",
                    per_m(a.depot_locks - b.depot_locks),
                    per_m(exchanges),
                    a.contended - b.contended,
                    per_m(a.refills - b.refills),
                )
            }
            _ => "no magazines (every allocation and free takes the slab lock), ".to_owned(),
        };
        format!(
            "{}: {objects} objects; {mags}objects the slab layer handed out directly {:.0} \
             per 10^6 objects; at the end {} slabs, {} partial, {} empty",
            self.label,
            per_m(after.direct_allocs - self.stats.direct_allocs),
            after.slabs,
            after.partial_slabs,
            after.empty_slabs,
        )
    }
}

/// Runs B14.
pub fn run(cfg: &Config, s: &Stack<'_, '_, '_>, res: &mut Results) {
    let kmem = [
        ("kmem cache", s.cache(SIZE)),
        ("kmem cache, NOMAGAZINE", s.nomag64),
        ("kmem cache, FIFO refill", s.fifo64),
        ("kmem cache, NOMAGAZINE, FIFO refill", s.nomag_fifo64),
    ];
    let before: Vec<Before<'_, '_>> = kmem
        .iter()
        .map(|&(label, c)| Before::take(label, c))
        .collect();
    let mut cs: Vec<Contender<'_>> = kmem
        .iter()
        .map(|&(label, c)| {
            let mut held = vec![0usize; BURST];
            Contender::new(label, move || cache_burst(c, &mut held))
        })
        .collect();
    s.each(&mut Peers { cs: &mut cs });
    let r = interleave::run(&mut cs, cfg.rounds(), cfg.batch() * 4);
    drop(cs);
    res.push_rounds(
        BENCH,
        "10^4 then 10^4, FIFO",
        "ns/object",
        &r,
        Some(0),
        BURST as f64,
    );
    for b in &before {
        res.note(BENCH.id, b.note());
    }
}
