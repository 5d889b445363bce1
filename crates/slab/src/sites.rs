//! Per-call-site accounting (the `site-stats` feature; the idea of Linux's
//! `/proc/allocinfo`): live objects, live bytes and allocations for every
//! call site that allocated from a cache, process-wide.
//!
//! A site is a row of a fixed table: the index that the call-site table of
//! debug mode (`raw::debug`) gives a `&'static Location` (a Rust API call,
//! `#[track_caller]`), or row 0, the *unknown site*, for every caller
//! without a location (`GlobalAlloc`, [`Caller::Code`], [`Caller::Stack`],
//! [`Caller::Unknown`], and locations past the table's 4095). The
//! [`DebugHooks::caller`](crate::DebugHooks::caller) stack walk is not
//! used: it costs a stack walk per allocation, and names code addresses,
//! which have no row; debug mode's leak report groups by them instead.
//!
//! Each object a user holds carries its row (a `u32`: in its bufctl, or in
//! an array below a headed slab's bitmap; see `raw`), written when it is
//! handed out and cleared to [`SiteId::NONE`] when it is freed, into a
//! magazine or to its slab: so the free, on any thread, finds the row to
//! lower. Only a user's calls count (`alloc`/`alloc_by` and the frees of
//! what they returned): the caches' own allocations (bootstrap caches,
//! quantum caches serving their arena) carry no row.
//!
//! The counters are relaxed atomics shared by every CPU: no lock, no
//! allocation, but a hot site's counters bounce between the CPUs that use
//! it. Read while other threads run, a row is a racy snapshot (objects and
//! bytes are read one after the other).

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::debug::Caller;
use crate::raw::{site_at, site_index, SITE_SLOTS};

/// A row of the site table, as an object's site slot holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SiteId(u32);

impl SiteId {
    /// Not counted: a free object, or one the caches allocated for
    /// themselves.
    pub(crate) const NONE: Self = Self(u32::MAX);

    /// The unknown site.
    const UNKNOWN: Self = Self(0);

    /// The row of `caller`: its location's, else the unknown site's.
    #[inline(always)]
    pub(crate) fn of(caller: Caller) -> Self {
        match caller {
            Caller::Location(l) => site_index(l).map_or(Self::UNKNOWN, Self),
            _ => Self::UNKNOWN,
        }
    }

    /// What a site slot holds for this row.
    pub(crate) const fn slot_value(self) -> u32 {
        self.0
    }

    fn row(self) -> Option<&'static Row> {
        ROWS.get(self.0 as usize)
    }
}

/// One site's counters: live objects are `allocs - frees` (two read-modify-
/// writes per allocation and per free, rather than three for an allocation
/// if live objects had a counter of their own).
struct Row {
    allocs: AtomicU64,
    frees: AtomicU64,
    bytes: AtomicU64,
}

#[allow(
    clippy::declare_interior_mutable_const,
    reason = "only the initializer of ROWS"
)]
const ZERO_ROW: Row = Row {
    allocs: AtomicU64::new(0),
    frees: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
};

/// The counters, by row (the site table's index; 0: the unknown site).
static ROWS: [Row; SITE_SLOTS] = [ZERO_ROW; SITE_SLOTS];

/// The object whose site slot is `slot` now counts for `site`: the row it
/// counted for (if any) loses it, `site` (if any) gains it and an
/// allocation. `bytes` is the cache's object size. Called with
/// [`SiteId::NONE`] when the object is freed, with its caller's row when
/// it is handed out.
#[inline(always)]
pub(crate) fn resite(slot: &AtomicU32, site: SiteId, bytes: u64) {
    let old = SiteId(slot.load(Ordering::Relaxed));
    slot.store(site.0, Ordering::Relaxed);
    if let Some(r) = old.row() {
        r.frees.fetch_add(1, Ordering::Relaxed);
        r.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
    if let Some(r) = site.row() {
        r.allocs.fetch_add(1, Ordering::Relaxed);
        r.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Takes back the allocation counted for `site` by an object that was
/// handed out and then given back (counted as a free) because its
/// constructor failed: neither happened.
pub(crate) fn unalloc(site: SiteId) {
    if let Some(r) = site.row() {
        r.allocs.fetch_sub(1, Ordering::Relaxed);
        r.frees.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One call site's row of the per-site accounting (feature `site-stats`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteStat {
    /// The site: a [`Caller::Location`], or [`Caller::Unknown`] for every
    /// caller without one (`GlobalAlloc` callers among them).
    pub caller: Caller,
    /// Objects from this site that users hold now (objects in magazines
    /// are not held).
    pub objects: u64,
    /// Their bytes: the object size of each one's cache (for `kmalloc`,
    /// the size class, not the size asked for).
    pub bytes: u64,
    /// Allocations made here so far.
    pub allocs: u64,
}

/// Calls `f` with every site that has allocated (feature `site-stats`):
/// the unknown site first, then the others in table order (no particular
/// order). Counters are process-wide, over every cache of every
/// [`Caches`](crate::Caches); a snapshot while other threads run.
pub fn site_stats(mut f: impl FnMut(&SiteStat)) {
    for (i, r) in ROWS.iter().enumerate() {
        let frees = r.frees.load(Ordering::Relaxed);
        let allocs = r.allocs.load(Ordering::Relaxed);
        if allocs == 0 {
            continue;
        }
        let caller = match i {
            0 => Caller::Unknown,
            _ => site_at(i as u64).map_or(Caller::Unknown, Caller::Location),
        };
        f(&SiteStat {
            caller,
            objects: allocs.saturating_sub(frees),
            bytes: r.bytes.load(Ordering::Relaxed),
            allocs,
        });
    }
}

/// Writes [`site_stats`] as a `::kmastat`-style table (feature
/// `site-stats`): bytes and objects in use and allocations per site, then
/// the totals.
///
/// ```text
/// memory in use buf in use alloc succeed  site
///          2080         10            10  src/main.rs:12:17
///             0          0             3  unknown site
///          2080         10            13  total
/// ```
pub fn report_sites(w: &mut impl fmt::Write) -> fmt::Result {
    writeln!(
        w,
        "{:>13} {:>10} {:>13}  site",
        "memory in use", "buf in use", "alloc succeed"
    )?;
    let mut total = (0u64, 0u64, 0u64);
    let mut result = Ok(());
    site_stats(|s| {
        total = (
            total.0.wrapping_add(s.bytes),
            total.1.wrapping_add(s.objects),
            total.2 + s.allocs,
        );
        if result.is_ok() {
            result = writeln!(
                w,
                "{:>13} {:>10} {:>13}  {}",
                s.bytes, s.objects, s.allocs, s.caller
            );
        }
    });
    result?;
    writeln!(w, "{:>13} {:>10} {:>13}  total", total.0, total.1, total.2)
}
