//! Shared kit of the kmalloc tests: a booted stack on the std platform, and
//! a snapshot of everything a refused operation must leave alone.
#![allow(dead_code, unreachable_pub)]

use core::alloc::Layout;

use kmalloc::{boot, Config, Kmalloc};
use kmem_magazine::ThreadCpus;

/// Boots `bytes` of memory and runs `f`; afterwards every cache and both
/// arenas pass their checkers.
pub fn with_kmalloc<R>(bytes: usize, f: impl FnOnce(&Kmalloc<'_, ThreadCpus>) -> R) -> R {
    with_kmalloc_config(bytes, &Config::default(), f)
}

/// [`with_kmalloc`] with `config`.
pub fn with_kmalloc_config<R>(
    bytes: usize,
    config: &Config<'_>,
    f: impl FnOnce(&Kmalloc<'_, ThreadCpus>) -> R,
) -> R {
    let mut mem = vec![0u8; bytes];
    boot(&mut mem, ThreadCpus::global(), config, |k| {
        let r = f(k);
        check(k);
        r
    })
    .expect("boot")
}

/// Every checker of the stack.
pub fn check(k: &Kmalloc<'_, ThreadCpus>) {
    k.caches().for_each(|c| {
        c.check()
            .unwrap_or_else(|e| panic!("cache {}: {e}", c.name()))
    });
    k.pages().check().expect("kpages check");
    k.caches().base().check().expect("base check");
}

/// What users hold and what the arenas handed out.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub in_use: Vec<(String, u64, u64)>,
    pub pages_live: usize,
    pub pages_allocated: usize,
    pub large: (u64, u64, u64),
}

impl Snapshot {
    /// The snapshot less the large-block counters (for tests whose large
    /// blocks come and go between two snapshots).
    pub fn without_large(mut self) -> Self {
        self.large = (0, 0, 0);
        self
    }

    /// Zeroes every cache's count of bad frees and answers their sum.
    pub fn take_bad_frees(&mut self) -> u64 {
        self.in_use
            .iter_mut()
            .map(|c| core::mem::take(&mut c.2))
            .sum()
    }
}

pub fn snapshot(k: &Kmalloc<'_, ThreadCpus>) -> Snapshot {
    let mut in_use = Vec::new();
    k.caches().stats(|s| {
        in_use.push((s.name.as_str().to_owned(), s.buf_in_use, s.bad_frees));
    });
    let st = k.pages().stats();
    Snapshot {
        in_use,
        pages_live: st.live,
        pages_allocated: st.allocated,
        large: k.large_counts(),
    }
}

pub fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}
