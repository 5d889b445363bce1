//! B2's peak-bytes probe: what each allocator took from its backing memory
//! during an untimed replay (see [`Footprint`] for how each is read).

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::suite::stack::Footprint;

/// A `GlobalAlloc` that remembers the highest end address it handed out.
pub struct HighWater<'a, A: ?Sized> {
    a: &'a A,
    top: AtomicUsize,
}

impl<'a, A: ?Sized> HighWater<'a, A> {
    /// Wraps `a`.
    pub fn new(a: &'a A) -> Self {
        Self {
            a,
            top: AtomicUsize::new(0),
        }
    }
}

// SAFETY: forwards every call unchanged; only observes the results.
unsafe impl<A: GlobalAlloc + ?Sized> GlobalAlloc for HighWater<'_, A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        let p = unsafe { self.a.alloc(layout) };
        self.top
            .fetch_max(p as usize + layout.size(), Ordering::Relaxed);
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { self.a.dealloc(ptr, layout) }
    }
}

/// Gives idle memory back where the allocator can (kmalloc reap,
/// slabmalloc reclaim) and returns the baseline to subtract.
pub fn baseline(fp: &Footprint<'_>) -> usize {
    match fp {
        Footprint::BaseArena(k) => {
            k.reap();
            k.base_bytes()
        }
        Footprint::Pages(s) => s.with(|z| {
            z.reclaim();
            z.small.peak = z.small.outstanding;
            z.large.peak = z.large.outstanding;
            0
        }),
        _ => 0,
    }
}

/// The footprint in bytes at the peak of a replay (call at the peak), or
/// `None` where not measurable.
pub fn read<A: ?Sized>(fp: &Footprint<'_>, hw: &HighWater<'_, A>, base: usize) -> Option<f64> {
    match fp {
        Footprint::BaseArena(k) => Some(k.base_bytes().saturating_sub(base) as f64),
        Footprint::HighWater(r) => {
            let top = hw.top.load(Ordering::Relaxed);
            Some(top.saturating_sub(r.start) as f64)
        }
        Footprint::Pages(s) => s.with(|z| {
            Some(
                (z.small.peak * crate::slabmalloc_peer::SMALL_PAGE
                    + z.large.peak * crate::slabmalloc_peer::LARGE_PAGE) as f64,
            )
        }),
        Footprint::Buddy(b) => Some(b.with(|h| h.stats_alloc_actual()) as f64),
        Footprint::Opaque => None,
    }
}
