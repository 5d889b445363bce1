//! The slab and magazine layers without std: bootstrap caches over the base
//! arena, a small-object cache with magazines and a large-object (bufctl)
//! cache, on a one-CPU platform.

use core::ops::Range;

use kmem_arena::Arena;
use kmem_magazine::ManualCpus;
use kmem_slab::{AllocFlags, CacheBuilder, Caches, KmemCache};

use crate::check::{ensure, ok};
use crate::rt::outln;

/// One CPU; its guard is a spin lock, so the program needs no threads.
static CPUS: ManualCpus<1> = ManualCpus::new();

/// Objects per cache in the test.
const N: usize = 64;

pub(crate) fn run(base: &Arena<'_>, heap: &Range<usize>) {
    let caches = ok(Caches::new(base, &CPUS), "Caches::new");
    for (name, size) in [("nostd_64", 64), ("nostd_1000", 1000)] {
        let cache = ok(
            caches.create(CacheBuilder::new(name, size)),
            "Caches::create",
        );
        exercise(&cache, heap);
        ok(cache.destroy(), "Cache::destroy");
    }
    let _ = caches.report(&mut crate::rt::Fd(crate::rt::STDOUT));
    caches.for_each(|c| {
        ok(c.check(), "bootstrap cache check");
        ensure!(c.stats().buf_in_use == 0, "{}: objects left", c.name());
    });
}

fn exercise(cache: &KmemCache<'_, ManualCpus<1>>, heap: &Range<usize>) {
    let mut objs = [0usize; N];
    for round in 0..3 {
        for (i, slot) in objs.iter_mut().enumerate() {
            let obj = ok(cache.alloc(AllocFlags::ZERO), "KmemCache::alloc");
            ensure!(
                heap.contains(&obj) && obj.is_multiple_of(8),
                "{}: object {obj:#x} outside the heap",
                cache.name()
            );
            // SAFETY: a fresh object of at least 64 bytes, ours until freed.
            unsafe { (obj as *mut usize).write(i) };
            *slot = obj;
        }
        for (i, &obj) in objs.iter().enumerate() {
            // SAFETY: as above.
            let v = unsafe { (obj as *const usize).read() };
            ensure!(v == i, "{}: object {obj:#x} overwritten", cache.name());
            // SAFETY: allocated above and freed once.
            ok(unsafe { cache.free(obj) }, "KmemCache::free");
        }
        ok(cache.check(), "KmemCache::check");
        if round == 1 {
            cache.reap();
        }
    }
    let st = cache.stats();
    ensure!(
        st.buf_in_use == 0 && st.allocs == 3 * N as u64,
        "{}: in use {} allocs {}",
        cache.name(),
        st.buf_in_use,
        st.allocs
    );
    outln!(
        "  cache {}: {} allocs, {} slabs, magazine size {}",
        cache.name(),
        st.allocs,
        st.slabs,
        st.magazines.map_or(0, |m| m.magsize)
    );
}
