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
///
/// # Panics
/// If the arena refuses the allocation or its free.
pub fn pair(a: &Arena<'_>, bytes: usize) {
    let p = a
        .alloc(bytes, Policy::InstantFit)
        .expect("page pair: alloc");
    // SAFETY: allocated just above with this size, never used.
    unsafe { a.free_memory(core::hint::black_box(p), bytes) }.expect("page pair: free");
}

/// The page arena without quantum caches that B6 and the kmalloc bench's
/// `qcache` group set against `kpages`: over the same base arena, importing
/// 16 pages at a time (import scale 4), with one page kept allocated so
/// that its span is not released to the base (and re-imported) on every
/// free, which would time an import as well.
pub struct PlainPages<'a> {
    /// The arena.
    pub arena: Arena<'a>,
    /// The page kept allocated.
    keep: usize,
}

impl<'a> PlainPages<'a> {
    /// Builds the arena over `base` and allocates its kept page.
    ///
    /// # Panics
    /// If either fails.
    pub fn new(base: &'a Arena<'a>) -> Self {
        let arena = Arena::builder("kpages-noqc")
            .quantum(PAGE_SIZE)
            .source(base)
            .tags_from(base)
            .import_scale(4)
            .build()
            .expect("page arena without quantum caches");
        let keep = arena
            .alloc(PAGE_SIZE, Policy::InstantFit)
            .expect("page arena without quantum caches: kept page");
        Self { arena, keep }
    }

    /// Frees the kept page and destroys the arena.
    ///
    /// # Panics
    /// If either fails.
    pub fn destroy(mut self) {
        // SAFETY: allocated in `new` with this size, never used.
        unsafe { self.arena.free_memory(self.keep, PAGE_SIZE) }.expect("kept page: free");
        self.arena.destroy().expect("page arena: destroy");
    }
}

/// Runs B6.
pub fn run(cfg: &Config, s: &Stack<'_, '_, '_>, res: &mut Results) {
    let kpages = s.kmalloc.pages();
    let base = s.kmalloc.caches().base();
    let plain = PlainPages::new(base);
    for pages in PAGES {
        let bytes = pages * PAGE_SIZE;
        let mut cs = [
            Contender::new("kpages, quantum cache", || pair(kpages, bytes)),
            Contender::new("page arena, segment path", || pair(&plain.arena, bytes)),
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
    plain.destroy();
    res.note(
        BENCH.id,
        format!(
            "kpages' quantum caches serve up to {} pages; the ratio column is segment path / \
             quantum cache (the target reads it inverted)",
            kpages.qcache_max() / PAGE_SIZE
        ),
    );
}
