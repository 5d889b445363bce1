//! B4, cross-thread (xmalloc-style producer/consumer): 64-byte objects
//! allocated on one thread, passed in batches of 64 through a bounded
//! queue, freed on the other ([`crate::xthread`]). Every object-layer
//! contender; the kmem contender is the 64-byte kmem cache (kmalloc runs
//! too). Unit: ns per object (wall time of a measurement over objects).

use core::alloc::{GlobalAlloc, Layout};

use crate::interleave::{self, Contender};
use crate::object::ObjectAlloc;
use crate::results::{Bench, Results};
use crate::slab_fixture::{mag_stats, mag_summary, StdCache};
use crate::suite::stack::{Entry, Stack, Visit};
use crate::suite::Config;
use crate::xthread::{with_consumer, Consumer, BATCH};

/// Id and title.
pub const BENCH: Bench = Bench {
    id: "B4",
    title: "cross-thread producer/consumer (64 B, batches of 64)",
};

/// A kmem cache as a `GlobalAlloc` of its one layout.
struct CacheAlloc<'c, 'a>(&'c StdCache<'a>);

// SAFETY: objects come from and go back to the cache, which hands out
// distinct 64-byte, 8-aligned objects; callers use only that layout.
unsafe impl GlobalAlloc for CacheAlloc<'_, '_> {
    #[inline]
    unsafe fn alloc(&self, _: Layout) -> *mut u8 {
        ObjectAlloc::alloc(self.0) as *mut u8
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _: Layout) {
        // SAFETY: the caller's guarantee, forwarded.
        unsafe { ObjectAlloc::free(self.0, ptr as usize) }
    }
}

struct V<'w, 'v, 'c> {
    cs: &'w mut Vec<Contender<'v>>,
    consumer: &'v Consumer<'c>,
}

impl<'v, 'c: 'v> Visit<'c> for V<'_, 'v, 'c> {
    fn visit<A: GlobalAlloc + Sync + 'c>(&mut self, e: Entry<'c, A>) {
        let Entry { name, a, .. } = e;
        let consumer = self.consumer;
        self.cs.push(Contender {
            label: name.to_string(),
            run: Box::new(move |n| consumer.measure(a, layout(), n)),
        });
    }
}

fn layout() -> Layout {
    Layout::from_size_align(64, 8).expect("layout")
}

/// Runs B4.
pub fn run(cfg: &Config, s: &Stack<'_, '_, '_>, res: &mut Results) {
    let kmem = CacheAlloc(s.cache(64));
    let before = mag_stats(s.cache(64));
    let r = with_consumer(|consumer| {
        let mut cs = vec![Contender {
            label: "kmem cache".into(),
            run: Box::new(|n| consumer.measure(&kmem, layout(), n)),
        }];
        s.each(&mut V {
            cs: &mut cs,
            consumer,
        });
        interleave::run(&mut cs, cfg.rounds(), cfg.batch() * 2)
    });
    let after = mag_stats(s.cache(64));
    res.push_rounds(BENCH, "64 B", "ns/object", &r, Some(0), BATCH as f64);
    res.note(
        BENCH.id,
        format!(
            "kmem cache magazines over the pass (per 10^6 objects): {}",
            mag_summary(&before, &after, after.cpu_allocs - before.cpu_allocs)
        ),
    );
}
