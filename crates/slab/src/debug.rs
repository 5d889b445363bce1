//! Debug mode: what the `DEBUG`, `REDZONE`, `POISON` and `AUDIT` flags add
//! to a cache's slow paths (a debug cache has no fast path: every
//! allocation and free takes the cache lock), the [`Report`]s it makes,
//! leak reports and the transaction log.
//!
//! A debug cache keeps its objects on bufctls, so the state of every
//! object is known: a free is checked before the object enters a magazine
//! (no shortcut), and the report of a bad free carries the object's last
//! allocation and free as the audit recorded them.

use core::fmt;
use core::panic::Location;
use core::sync::atomic::{AtomicU64, Ordering};

use kmem_arena::Name;
use kmem_magazine::Cpu;

use crate::cache::KmemCache;
use crate::error::BadFree;
use crate::raw::{site_at, site_index, LogEntry, RawSite, RED};
use crate::slabs::SlabState;

/// Who made an allocation or free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Not known (an internal path, or no hook to find it).
    Unknown,
    /// A call site of the Rust API (`#[track_caller]`).
    Location(&'static Location<'static>),
    /// A code address (a return address), for callers without a Rust
    /// location such as `GlobalAlloc`.
    Code(usize),
    /// A facade's entry point, marked by the address of one of its stack
    /// locals: [`DebugHooks::caller`] turns it into the [`Code`](Self::Code)
    /// address of the facade's caller (unknown without the hook).
    Stack(usize),
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown => f.write_str("unknown site"),
            Self::Location(l) => write!(f, "{}:{}:{}", l.file(), l.line(), l.column()),
            Self::Code(ip) => write!(f, "code {ip:#x}"),
            Self::Stack(sp) => write!(f, "a caller with stack at {sp:#x}"),
        }
    }
}

/// A call as the slow paths see it: who made it and, when a facade knows
/// it, the size it asked for (0: not known).
#[derive(Clone, Copy, Debug)]
pub(crate) struct By {
    pub(crate) caller: Caller,
    pub(crate) size: usize,
}

impl From<Caller> for By {
    fn from(caller: Caller) -> Self {
        Self { caller, size: 0 }
    }
}

/// One allocation or free as the audit recorded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    /// Who called.
    pub caller: Caller,
    /// With a [`Caller::Code`]: the next two return addresses up the
    /// stack, when the hook found them (0 otherwise).
    pub callers: [usize; 2],
    /// The CPU slot it ran on, if the platform knows.
    pub slot: Option<usize>,
    /// When: the [`DebugHooks::now`] clock if one is set, else a sequence
    /// number that orders every audited operation of the process.
    pub time: u64,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.caller)?;
        for ip in self.callers.iter().filter(|&&ip| ip != 0) {
            write!(f, " < {ip:#x}")?;
        }
        if let Some(slot) = self.slot {
            write!(f, " on CPU slot {slot}")?;
        }
        write!(f, " at time {}", self.time)
    }
}

impl Site {
    fn from_raw(r: &RawSite) -> Option<Self> {
        let caller = match r.tag {
            0 => return None,
            1 => site_at(r.value).map_or(Caller::Unknown, Caller::Location),
            2 => Caller::Code(usize::try_from(r.value).ok()?),
            _ => Caller::Unknown,
        };
        let more = |i: usize| usize::try_from(r.more[i]).unwrap_or(0);
        Some(Self {
            caller,
            callers: if r.tag == 2 {
                [more(0), more(1)]
            } else {
                [0; 2]
            },
            slot: r.slot.checked_sub(1).and_then(|s| usize::try_from(s).ok()),
            time: r.time,
        })
    }
}

/// What debug mode found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finding {
    /// A free that was refused (double, wrong cache, foreign, interior,
    /// or over a broken redzone).
    BadFree(BadFree),
    /// A free object was written to: the first word that lost its
    /// [`POISON`](crate::POISON), found when the object was handed out
    /// again (it is handed out all the same).
    WriteAfterFree {
        /// Byte offset of that word in the object.
        offset: usize,
    },
}

/// A debug-mode report: what was found, on which object of which cache,
/// and the object's history from the audit (when the cache has `AUDIT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// What was found.
    pub finding: Finding,
    /// The cache the call was made on.
    pub cache: Name,
    /// The object's address.
    pub addr: usize,
    /// The cache's object size.
    pub size: usize,
    /// The call that found it.
    pub at: Site,
    /// The object's last allocation, if audited.
    pub last_alloc: Option<Site>,
    /// The object's last free, if audited.
    pub last_free: Option<Site>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (cache, addr, size) = (self.cache.as_str(), self.addr, self.size);
        write!(f, "kmem debug: cache {cache} ({size}-byte objects): ")?;
        match self.finding {
            Finding::BadFree(BadFree::Overrun) => {
                write!(f, "buffer overrun past the end of object {addr:#x}")?;
            }
            Finding::BadFree(kind) => write!(f, "bad free of {addr:#x}: {kind}")?,
            Finding::WriteAfterFree { offset } => {
                write!(f, "write after free to object {addr:#x} at offset {offset}")?
            }
        }
        write!(f, "\n  this call: {}", self.at)?;
        if let Some(s) = self.last_alloc {
            write!(f, "\n  last allocated by: {s}")?;
        }
        if let Some(s) = self.last_free {
            write!(f, "\n  last freed by: {s}")?;
        }
        Ok(())
    }
}

/// What debug mode calls out to, set for a whole cache set with
/// [`Caches::set_debug_hooks`](crate::Caches::set_debug_hooks).
#[derive(Clone, Copy, Debug, Default)]
pub struct DebugHooks {
    /// Called with every report, outside every lock of the set (it may
    /// print, allocate, or abort).
    pub report: Option<fn(&Report)>,
    /// Finds the code addresses of the caller of a facade's entry point
    /// marked [`Caller::Stack`]: its return address and the next two up
    /// the stack (a stack walk does it; 0 for none). Called on debug
    /// caches' paths only, with the cache lock held: it must not allocate.
    pub caller: Option<fn(usize) -> [usize; 3]>,
    /// A clock for [`Site::time`].
    pub now: Option<fn() -> u64>,
}

/// Live objects of one cache from one allocation site, in a leak report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeakGroup {
    /// The cache.
    pub cache: Name,
    /// Where they were allocated ([`Caller::Unknown`] for a cache without
    /// `AUDIT`, and for sites past the report's table).
    pub caller: Caller,
    /// How many are live.
    pub objects: u64,
    /// Their bytes (objects times the object size).
    pub bytes: u64,
}

/// What a logged transaction was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnOp {
    /// An allocation.
    Alloc,
    /// A free.
    Free,
    /// A refused free.
    Refused,
}

/// One entry of an `AUDIT` cache's transaction log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// What it was.
    pub op: TxnOp,
    /// The object.
    pub addr: usize,
    /// Who, where and when.
    pub site: Site,
}

/// Entries of a transaction log.
pub(crate) const LOG_ENTRIES: usize = 64;

/// Distinct allocation sites one leak report groups (more are grouped as
/// unknown).
const LEAK_SITES: usize = 64;

/// The debug clock when no hook gives one.
static SEQ: AtomicU64 = AtomicU64::new(1);

/// An object crossing a debug cache's boundary (handed out or freed):
/// its address, the call site, and the size the caller gave (0: none).
#[derive(Clone, Copy)]
pub(crate) struct Crossing {
    addr: usize,
    site: RawSite,
    size: u64,
}

impl<C: Cpu> KmemCache<'_, C> {
    /// True when the cache has any debug part.
    pub(crate) fn debugging(&self) -> bool {
        self.flags.contains(crate::CacheFlags::DEBUG)
    }

    fn hooks(&self) -> DebugHooks {
        self.ctx.map(|c| c.debug_hooks()).unwrap_or_default()
    }

    /// Records the current call as a site.
    pub(crate) fn site(&self, caller: Caller) -> RawSite {
        let hooks = self.hooks();
        let mut more = [0; 2];
        let caller = match (caller, hooks.caller) {
            (Caller::Stack(marker), Some(find)) => {
                let ips = find(marker);
                more = [ips[1] as u64, ips[2] as u64];
                Caller::Code(ips[0])
            }
            (c, _) => c,
        };
        let (tag, value) = match caller {
            Caller::Unknown | Caller::Stack(_) => (3, 0),
            Caller::Location(l) => site_index(l).map_or((3, 0), |i| (1, u64::from(i))),
            Caller::Code(ip) => (2, ip as u64),
        };
        RawSite {
            tag,
            value,
            more,
            slot: self
                .cpu()
                .and_then(|c| c.current_slot())
                .map_or(0, |s| s as u64 + 1),
            time: hooks
                .now
                .map_or_else(|| SEQ.fetch_add(1, Ordering::Relaxed), |now| now()),
        }
    }

    /// Builds a report on `addr` (taking the audit from `st`).
    pub(crate) fn make_report(
        &self,
        st: &SlabState<'_>,
        finding: Finding,
        addr: usize,
        at: RawSite,
    ) -> Report {
        let t = st.set.trailer(addr).unwrap_or_default();
        Report {
            finding,
            cache: self.name,
            addr,
            size: self.geo.obj,
            at: Site::from_raw(&at).unwrap_or(Site {
                caller: Caller::Unknown,
                callers: [0; 2],
                slot: None,
                time: 0,
            }),
            last_alloc: Site::from_raw(&t.alloc),
            last_free: Site::from_raw(&t.free),
        }
    }

    /// Delivers a report: kept as the cache's last, counted, and passed to
    /// the set's report hook. Call with no lock held.
    pub(crate) fn deliver(&self, r: Report) {
        self.reports.fetch_add(1, Ordering::Relaxed);
        *self.last_report.lock() = Some(r);
        if let Some(hook) = self.hooks().report {
            crate::handle::call_out(self.cpu(), || hook(&r));
        }
    }

    /// Logs a transaction (`AUDIT` caches).
    pub(crate) fn log(st: &mut SlabState<'_>, op: TxnOp, addr: usize, site: RawSite) {
        if let Some(ring) = st.log.as_mut() {
            ring.push(LogEntry {
                op: match op {
                    TxnOp::Alloc => 1,
                    TxnOp::Free => 2,
                    TxnOp::Refused => 3,
                },
                addr: addr as u64,
                site,
            });
        }
    }

    /// `addr` crossing the cache's boundary for `caller`, in debug mode.
    pub(crate) fn crossing(&self, addr: usize, caller: By) -> Crossing {
        Crossing {
            addr,
            site: self.site(caller.caller),
            size: caller.size as u64,
        }
    }

    /// Debug work on an object being handed out (state not `Allocated`
    /// yet): the poison check, then the guard word and the audit record.
    /// Returns a report to deliver once the lock is dropped.
    pub(crate) fn debug_hand_out(&self, st: &mut SlabState<'_>, at: Crossing) -> Option<Report> {
        let Crossing { addr, site, size } = at;
        let report = st
            .set
            .poison_broken(addr)
            .map(|offset| self.make_report(st, Finding::WriteAfterFree { offset }, addr, site));
        if let Some(mut t) = st.set.trailer(addr) {
            t.red = RED;
            t.alloc = site;
            t.req = size;
            st.set.set_trailer(addr, &t);
        }
        Self::log(st, TxnOp::Alloc, addr, site);
        report
    }

    /// Debug work on a free that passed the state check (the object is
    /// still `Allocated`): the guard word, then the audit record. A report
    /// refuses the free (an overrun).
    pub(crate) fn debug_free(&self, st: &mut SlabState<'_>, at: Crossing) -> Option<Report> {
        let Crossing { addr, site, size } = at;
        if let Some(mut t) = st.set.trailer(addr) {
            if self.flags.contains(crate::CacheFlags::REDZONE) && t.red != RED {
                Self::log(st, TxnOp::Refused, addr, site);
                return Some(self.make_report(st, Finding::BadFree(BadFree::Overrun), addr, site));
            }
            if size != 0 && t.req != 0 && size != t.req {
                Self::log(st, TxnOp::Refused, addr, site);
                let kind = BadFree::WrongSize {
                    allocated: usize::try_from(t.req).unwrap_or(usize::MAX),
                };
                return Some(self.make_report(st, Finding::BadFree(kind), addr, site));
            }
            t.free = site;
            st.set.set_trailer(addr, &t);
        }
        Self::log(st, TxnOp::Free, addr, site);
        None
    }

    /// The report of a refused free of a debug cache.
    pub(crate) fn debug_refused(&self, addr: usize, kind: BadFree, caller: By) -> Report {
        let site = self.site(caller.caller);
        let mut st = self.slab.lock();
        Self::log(&mut st, TxnOp::Refused, addr, site);
        self.make_report(&st, Finding::BadFree(kind), addr, site)
    }

    /// The audit of `addr` if it is an object of this cache: its last
    /// allocation and free.
    pub(crate) fn audit_of(&self, addr: usize) -> Option<(Option<Site>, Option<Site>)> {
        let t = self.slab.lock().set.trailer(addr)?;
        Some((Site::from_raw(&t.alloc), Site::from_raw(&t.free)))
    }

    /// Debug mode: the allocated object `obj` now stands for `size` bytes
    /// of its caller's (a facade resized it in place), so a sized free
    /// expects that size. Nothing outside debug mode, or for an object
    /// that is not allocated.
    pub fn note_size(&self, obj: usize, size: usize) {
        if !self.debugging() {
            return;
        }
        let mut st = self.slab.lock();
        if st.validate(obj, crate::slabs::From::User).is_ok() {
            if let Some(mut t) = st.set.trailer(obj) {
                t.req = size as u64;
                st.set.set_trailer(obj, &t);
            }
        }
    }

    /// The last report debug mode made on this cache.
    pub fn last_report(&self) -> Option<Report> {
        *self.last_report.lock()
    }

    /// The live objects, grouped by allocation site (the `::findleaks`
    /// idea; exact for a cache with `AUDIT`, one group of unknown site
    /// otherwise). Objects in magazines are not live.
    pub fn leaks(&self, mut f: impl FnMut(&LeakGroup)) {
        let obj = self.geo.obj as u64;
        if !self.debugging() {
            let live = self.stats().buf_in_use;
            if live > 0 {
                f(&LeakGroup {
                    cache: self.name,
                    caller: Caller::Unknown,
                    objects: live,
                    bytes: live * obj,
                });
            }
            return;
        }
        let mut groups = [(RawSite::default(), 0u64); LEAK_SITES];
        let mut other = 0u64;
        {
            let st = self.slab.lock();
            st.set.for_each_allocated(|addr| {
                let mut key = st
                    .set
                    .trailer(addr)
                    .map_or_else(RawSite::default, |t| t.alloc);
                key.slot = 0;
                key.time = 0;
                key.more = [0; 2];
                match groups.iter_mut().find(|g| g.1 == 0 || g.0 == key) {
                    Some(g) => {
                        g.0 = key;
                        g.1 += 1;
                    }
                    None => other += 1,
                }
            });
        }
        for (key, n) in groups.iter().filter(|g| g.1 > 0) {
            let caller = Site::from_raw(key).map_or(Caller::Unknown, |s| s.caller);
            f(&LeakGroup {
                cache: self.name,
                caller,
                objects: *n,
                bytes: n * obj,
            });
        }
        if other > 0 {
            f(&LeakGroup {
                cache: self.name,
                caller: Caller::Unknown,
                objects: other,
                bytes: other * obj,
            });
        }
    }

    /// The transaction log of an `AUDIT` cache, oldest first (the last
    /// [`LOG_ENTRIES`](Self::LOG_ENTRIES) allocations and frees).
    pub fn transactions(&self, mut f: impl FnMut(&Transaction)) {
        let mut copy = [LogEntry::default(); LOG_ENTRIES];
        let mut n = 0;
        if let Some(ring) = self.slab.lock().log.as_ref() {
            ring.for_each(|e| {
                if n < LOG_ENTRIES {
                    copy[n] = *e;
                    n += 1;
                }
            });
        }
        for e in &copy[..n] {
            let op = match e.op {
                1 => TxnOp::Alloc,
                2 => TxnOp::Free,
                _ => TxnOp::Refused,
            };
            if let Some(site) = Site::from_raw(&e.site) {
                f(&Transaction {
                    op,
                    addr: e.addr as usize,
                    site,
                });
            }
        }
    }

    /// Entries an `AUDIT` cache's transaction log keeps.
    pub const LOG_ENTRIES: usize = LOG_ENTRIES;
}

/// Writes leak groups as a table: site, objects, bytes.
pub(crate) fn write_leaks(
    w: &mut impl fmt::Write,
    each: impl FnOnce(&mut dyn FnMut(&LeakGroup)),
) -> fmt::Result {
    writeln!(
        w,
        "{:<20} {:>10} {:>12}  allocated at",
        "cache", "objects", "bytes"
    )?;
    let mut result = Ok(());
    each(&mut |g| {
        if result.is_ok() {
            result = writeln!(
                w,
                "{:<20} {:>10} {:>12}  {}",
                g.cache.as_str(),
                g.objects,
                g.bytes,
                g.caller
            );
        }
    });
    result
}
