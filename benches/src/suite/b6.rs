//! B6, the quantum cache: a pair of 1, 2, 4 and 8 pages on kmalloc's
//! `kpages` (quantum caches up to 8 pages: the pair is a magazine hit)
//! against the same pair on a page arena over the same base arena without
//! quantum caches (the segment path), as the kmalloc bench's `qcache`
//! group does for one page. The plain arena keeps one page allocated so
//! that its span is not released (and re-imported) on every free.

use kmem_arena::{Arena, Policy};
use kmem_physmem::PAGE_SIZE;

use crate::interleave::{self, Contender};
use crate::results::{Bench, Results};
use crate::suite::stack::Stack;
use crate::suite::Config;

/// Id and title.
pub const BENCH: Bench = Bench {
    id: "B6",
    title: "quantum cache on versus off (page arena pairs)",
};

/// Pages per pair.
pub const PAGES: [usize; 4] = [1, 2, 4, 8];

/// An alloc+free pair on a page (memory) arena: the free is the unsafe
/// `free_memory` (the safe `free` refuses memory arenas), the same path
/// `free` takes once past that check.
fn pair(a: &Arena<'_>, bytes: usize) {
    let p = a.alloc(bytes, Policy::InstantFit).expect("B6: alloc");
    // SAFETY: allocated just above with this size, never used.
    unsafe { a.free_memory(core::hint::black_box(p), bytes) }.expect("B6: free");
}

/// Runs B6.
pub fn run(cfg: &Config, s: &Stack<'_, '_, '_>, res: &mut Results) {
    let kpages = s.kmalloc.pages();
    let base = s.kmalloc.caches().base();
    let mut plain = Arena::builder("kpages-noqc")
        .quantum(PAGE_SIZE)
        .source(base)
        .tags_from(base)
        .import_scale(4)
        .build()
        .expect("B6: page arena without quantum caches");
    let keep = plain
        .alloc(PAGE_SIZE, Policy::InstantFit)
        .expect("B6: page");
    for pages in PAGES {
        let bytes = pages * PAGE_SIZE;
        let mut cs = [
            Contender::new("kpages, quantum cache", || pair(kpages, bytes)),
            Contender::new("page arena, segment path", || pair(&plain, bytes)),
        ];
        let r = interleave::run(&mut cs, cfg.rounds(), cfg.batch());
        res.push_rounds(
            BENCH,
            &format!("{pages} page(s)"),
            "ns/pair",
            &r,
            Some(0),
            1.0,
        );
    }
    // SAFETY: allocated above with this size, never used.
    unsafe { plain.free_memory(keep, PAGE_SIZE) }.expect("B6: free");
    plain.destroy().expect("B6: destroy");
    res.note(
        BENCH.id,
        format!(
            "kpages' quantum caches serve up to {} pages; the ratio column is segment path / \
             quantum cache (the target reads it inverted)",
            kpages.qcache_max() / PAGE_SIZE
        ),
    );
}
