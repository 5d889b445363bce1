//! Purging every CPU's magazines on a live cache: what idle threads hold
//! in their magazines goes back (`KmemCache::purge_magazines`, the upkeep
//! pass for threads idle through an interval, and an exhausted source's
//! reclaim), while those threads go on afterwards.

mod common;

use std::sync::{Arc, Barrier};

use common::{leak, limited_stack as stack};

use kmem_arena::Arena;
use kmem_magazine::ThreadCpus;
use kmem_slab::{AllocFlags, CacheBuilder, Caches, KmemCache};

type Cache = KmemCache<'static, ThreadCpus>;

/// A cache of `size`-byte objects on `small`, for the rest of the test.
fn cache(
    caches: &'static Caches<'static, ThreadCpus>,
    small: &'static Arena<'static>,
    name: &'static str,
    size: usize,
) -> &'static Cache {
    let c = leak(
        caches
            .create(CacheBuilder::new(name, size).source(small))
            .unwrap(),
    );
    c
}

/// A thread that allocates `n` objects of `c`, frees them (into its
/// magazines), then waits at `parked` until `resume`, and allocates and
/// frees once more. Returns whether that last allocation succeeded.
fn worker(
    c: &'static Cache,
    n: usize,
    parked: Arc<Barrier>,
    resume: Arc<Barrier>,
) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        let objs: Vec<usize> = (0..n)
            .map(|_| c.alloc(AllocFlags::empty()).unwrap())
            .collect();
        for obj in objs {
            // SAFETY: allocated above, freed once.
            unsafe { c.free(obj) }.unwrap();
        }
        parked.wait();
        resume.wait();
        let obj = c.alloc(AllocFlags::empty());
        if let Ok(obj) = obj {
            // SAFETY: as above.
            unsafe { c.free(obj) }.unwrap();
        }
        obj.is_ok()
    })
}

#[test]
fn a_purge_takes_what_parked_threads_hold() {
    let (small, caches) = stack(1024);
    let c = cache(caches, small, "purged", 256);
    let (parked, resume) = (Arc::new(Barrier::new(3)), Arc::new(Barrier::new(3)));
    // Two threads keep a few magazines' worth of objects each (what fits
    // in their two magazines stays with them).
    let workers: Vec<_> = (0..2)
        .map(|_| worker(c, 10, parked.clone(), resume.clone()))
        .collect();
    parked.wait();
    let held = c.stats().slab_busy;
    assert!(held > 0, "the parked threads' magazines hold objects");
    c.flush_current();
    c.purge_magazines();
    let st = c.stats();
    assert_eq!(st.slab_busy, 0, "every object back in its slab: {st:?}");
    assert_eq!(small.stats().allocated, 0, "every slab back");
    assert!(st.magazines.unwrap().purge_slots_taken >= 2);
    resume.wait();
    for w in workers {
        assert!(w.join().unwrap(), "the threads go on");
    }
    c.check().unwrap();
}

#[test]
fn the_upkeep_pass_takes_magazines_of_threads_idle_for_an_interval() {
    let (small, caches) = stack(1024);
    let c = cache(caches, small, "idle", 256);
    let (parked, resume) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let w = worker(c, 10, parked.clone(), resume.clone());
    parked.wait();
    // The first pass notes the thread's operation count; it is idle
    // through the next interval, so the second takes its magazines.
    caches.tick();
    assert!(c.stats().slab_busy > 0);
    caches.tick();
    assert_eq!(c.stats().slab_busy, 0);
    assert_eq!(small.stats().allocated, 0);
    resume.wait();
    assert!(w.join().unwrap());
    c.check().unwrap();
}

#[test]
fn an_exhausted_source_takes_back_what_parked_threads_hold() {
    let (small, caches) = stack(8);
    small.add_reclaim(caches).unwrap();
    let c = cache(caches, small, "scarce", 1024);
    // How many objects the source's limit allows, all of it given back.
    let mut objs = Vec::new();
    while let Ok(obj) = c.alloc(AllocFlags::empty()) {
        objs.push(obj);
    }
    let capacity = objs.len();
    for obj in objs.drain(..) {
        // SAFETY: allocated above, freed once.
        unsafe { c.free(obj) }.unwrap();
    }
    c.flush_current();
    c.reap();
    assert_eq!(small.stats().allocated, 0);
    // A thread keeps 6 of them in its two magazines (3 rounds each, for
    // objects of this size) and parks.
    let (parked, resume) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let w = worker(c, 6, parked.clone(), resume.clone());
    parked.wait();
    assert!(c.stats().slab_busy >= 6);
    // This thread needs all of them: the source's reclaim purges the
    // parked thread's magazines, and every allocation works.
    for _ in 0..capacity {
        objs.push(
            c.alloc(AllocFlags::empty())
                .expect("the reclaim purges the parked magazines"),
        );
    }
    for obj in objs {
        // SAFETY: allocated above, freed once.
        unsafe { c.free(obj) }.unwrap();
    }
    resume.wait();
    assert!(w.join().unwrap());
    c.check().unwrap();
}
