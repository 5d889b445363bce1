//! B1, the fast path: alloc+free pairs of one size (16, 64, 256, 1024 B)
//! on one thread, and of mixed sizes (8 B-8 KiB, the kmalloc bench's
//! trace). The kmem contender is a kmem cache of that size (fixed sizes)
//! or kmalloc (mixed sizes).

use core::alloc::{GlobalAlloc, Layout};

use crate::interleave::{self, Contender};
use crate::mixed::{pairs, Trace};
use crate::object::{layout_pair, pair};
use crate::results::{Bench, Results};
use crate::suite::stack::{Entry, Stack, Visit, SIZES};
use crate::suite::Config;

/// Id and title.
pub const BENCH: Bench = Bench {
    id: "B1",
    title: "fast path (alloc+free pairs, 1 thread)",
};

/// Seed of the mixed-size trace (the kmalloc bench's).
pub const MIXED_SEED: u64 = 0x6b6d_616c;

struct Fixed<'v, 'c> {
    cs: &'v mut Vec<Contender<'c>>,
    layout: Layout,
}

impl<'c> Visit<'c> for Fixed<'_, 'c> {
    fn visit<A: GlobalAlloc + Sync + 'c>(&mut self, e: Entry<'c, A>) {
        let Entry { name, a, .. } = e;
        let l = self.layout;
        self.cs
            .push(Contender::new(name, move || layout_pair(a, l)));
    }
}

struct Mixed<'v, 'c> {
    cs: &'v mut Vec<Contender<'c>>,
    trace: &'c Trace,
}

impl<'c> Visit<'c> for Mixed<'_, 'c> {
    fn visit<A: GlobalAlloc + Sync + 'c>(&mut self, e: Entry<'c, A>) {
        let Entry { name, a, .. } = e;
        let trace = self.trace;
        let mut at = 0usize;
        self.cs
            .push(Contender::new(name, move || pairs(a, trace, &mut at, 1)));
    }
}

/// Runs B1.
pub fn run(cfg: &Config, s: &Stack<'_, '_, '_>, res: &mut Results) {
    for size in SIZES {
        // Looked up once, outside the timed closure.
        let cache = s.cache(size);
        let mut cs = vec![Contender::new("kmem cache", move || pair(cache))];
        s.each(&mut Fixed {
            cs: &mut cs,
            layout: Layout::from_size_align(size, 8).expect("layout"),
        });
        let r = interleave::run(&mut cs, cfg.rounds(), cfg.batch());
        drop(cs);
        res.push_rounds(BENCH, &format!("{size} B"), "ns/pair", &r, Some(0), 1.0);
    }
    let trace = Trace::new(MIXED_SEED);
    let mut cs = Vec::new();
    s.each(&mut Mixed {
        cs: &mut cs,
        trace: &trace,
    });
    let r = interleave::run(&mut cs, cfg.rounds(), cfg.batch());
    drop(cs);
    res.push_rounds(BENCH, "mixed 8 B-8 KiB", "ns/pair", &r, Some(0), 1.0);
}
