//! B14, after Linux's `slab_test`: bursts of 10^4 allocations of 64 bytes,
//! then the 10^4 frees in the order they were allocated (FIFO); and
//! bursts of 10^4 allocations, a random half of them freed and allocated
//! again (where many slabs are partly used), then all freed; on one
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
use crate::suite::stack::{Entry, Stack, Visit};
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
/// in the order `order` gives (indices into `held`); with `again`, the
/// first half of that order is freed and allocated again before all go.
fn cache_burst(c: &StdCache<'_>, held: &mut [usize], order: &[usize], again: bool) {
    for slot in held.iter_mut() {
        *slot = ObjectAlloc::alloc(c);
    }
    black_box(&mut *held);
    if again {
        let half = &order[..order.len() / 2];
        for &i in half {
            // SAFETY: allocated above, freed once before it is replaced.
            unsafe { ObjectAlloc::free(c, held[i]) };
        }
        for &i in half {
            held[i] = ObjectAlloc::alloc(c);
        }
        black_box(&mut *held);
    }
    for &i in order {
        // SAFETY: allocated above; `order` is a permutation, so each is
        // freed once.
        unsafe { ObjectAlloc::free(c, held[i]) };
    }
}

/// One burst through a `GlobalAlloc`, as [`cache_burst`].
fn heap_burst<A: GlobalAlloc + ?Sized>(a: &A, held: &mut [*mut u8], order: &[usize], again: bool) {
    let l = Layout::from_size_align(SIZE, 8).expect("layout");
    let alloc = || {
        // SAFETY: a non-zero-size layout.
        let p = unsafe { a.alloc(l) };
        assert!(!p.is_null(), "B14: allocation failed");
        p
    };
    for slot in held.iter_mut() {
        *slot = alloc();
    }
    black_box(&mut *held);
    if again {
        let half = &order[..order.len() / 2];
        for &i in half {
            // SAFETY: allocated above with `l`, freed once before it is
            // replaced.
            unsafe { a.dealloc(held[i], l) };
        }
        for &i in half {
            held[i] = alloc();
        }
        black_box(&mut *held);
    }
    for &i in order {
        // SAFETY: allocated above with `l`; `order` is a permutation, so
        // each is freed once.
        unsafe { a.dealloc(held[i], l) };
    }
}

/// The bursts B14 runs: frees in allocation order (FIFO); and a random
/// half freed (one fixed permutation), allocated again, then all freed
/// in that order: the allocations again find many slabs partly used,
/// where the order in which partial slabs are taken can matter. Objects
/// per burst: the allocations it makes.
fn orders() -> [(&'static str, Vec<usize>, bool); 2] {
    let fifo: Vec<usize> = (0..BURST).collect();
    let mut random = fifo.clone();
    let mut rng = kmem_physmem::Rng::new(0xb14);
    for i in (1..BURST).rev() {
        random.swap(i, rng.below(i as u64 + 1) as usize);
    }
    [
        ("10^4 then 10^4, FIFO", fifo, false),
        ("10^4, a random half again, 10^4 freed", random, true),
    ]
}

struct Peers<'v, 'c, 'o> {
    cs: &'v mut Vec<Contender<'c>>,
    order: &'o [usize],
    again: bool,
}

impl<'c> Visit<'c> for Peers<'_, 'c, 'c> {
    fn visit<A: GlobalAlloc + Sync + 'c>(&mut self, e: Entry<'c, A>) {
        let Entry {
            name,
            a,
            linear: slow,
            ..
        } = e;
        if slow {
            // Linear per operation with 10^4 live objects.
            return;
        }
        let mut held = vec![ptr::null_mut(); BURST];
        let (order, again) = (self.order, self.again);
        self.cs.push(Contender::new(name, move || {
            heap_burst(a, &mut held, order, again)
        }));
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
    for (param, order, again) in &orders() {
        let again = *again;
        let before: Vec<Before<'_, '_>> = kmem
            .iter()
            .map(|&(label, c)| Before::take(label, c))
            .collect();
        let mut cs: Vec<Contender<'_>> = kmem
            .iter()
            .map(|&(label, c)| {
                let mut held = vec![0usize; BURST];
                Contender::new(label, move || cache_burst(c, &mut held, order, again))
            })
            .collect();
        s.each(&mut Peers {
            cs: &mut cs,
            order,
            again,
        });
        let r = interleave::run(&mut cs, cfg.rounds(), cfg.batch() * 4);
        drop(cs);
        let objects = if again { BURST * 3 / 2 } else { BURST };
        res.push_rounds(BENCH, param, "ns/object", &r, Some(0), objects as f64);
        for b in &before {
            res.note(BENCH.id, format!("{param}: {}", b.note()));
        }
    }
}
