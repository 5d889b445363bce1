//! B14, after Linux's `slab_test`: bursts of 10^4 allocations of 64 bytes,
//! then the 10^4 frees in the order they were allocated (FIFO), on one
//! thread. Contenders: the 64-byte kmem cache, its `NOMAGAZINE` ablation,
//! and every `GlobalAlloc` peer. Unit: ns per object (an allocation and its
//! free). The note gives what the kmem cache's layers did over the run:
//! depot visits per 10^6 objects, batch refills, slab-lock holds saved,
//! and its partial slabs at the end. (`slab_test`'s other parts: alloc/free
//! pairs are B1, every thread at once is B3, a remote free is B4.)

use core::alloc::{GlobalAlloc, Layout};
use core::hint::black_box;
use core::ptr;

use crate::interleave::{self, Contender};
use crate::object::ObjectAlloc;
use crate::results::{Bench, Results};
use crate::slab_fixture::{mag_stats, StdCache};
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

/// Runs B14.
pub fn run(cfg: &Config, s: &Stack<'_, '_, '_>, res: &mut Results) {
    let (cache, nomag) = (s.cache(SIZE), s.nomag64);
    let before = mag_stats(cache);
    let slab_before = cache.stats();
    let mut held = vec![0usize; BURST];
    let mut held_nomag = vec![0usize; BURST];
    let mut cs = vec![
        Contender::new("kmem cache", move || cache_burst(cache, &mut held)),
        Contender::new("kmem cache, NOMAGAZINE", move || {
            cache_burst(nomag, &mut held_nomag)
        }),
    ];
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
    let (after, slab_after) = (mag_stats(cache), cache.stats());
    let objects = (slab_after.allocs - slab_before.allocs).max(1);
    let per_m = |n: u64| n as f64 * 1e6 / objects as f64;
    let visits = (after.depot_not_empty_out - before.depot_not_empty_out)
        + (after.depot_empty_out - before.depot_empty_out);
    res.note(
        BENCH.id,
        format!(
            "kmem cache over the run: {objects} objects; depot exchanges {:.0} per 10^6 \
             objects, contended depot locks {}, batch refills {} ({:.0} per 10^6 objects), \
             objects the slab layer handed out directly {}; at the end {} slabs, {} partial, \
             {} empty",
            per_m(visits),
            after.contended - before.contended,
            after.refills - before.refills,
            per_m(after.refills - before.refills),
            slab_after.direct_allocs - slab_before.direct_allocs,
            slab_after.slabs,
            slab_after.partial_slabs,
            slab_after.empty_slabs,
        ),
    );
}
