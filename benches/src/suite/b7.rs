//! B7, constrained xalloc: a seeded trace of requests with alignment,
//! phase, nocross and `[min, max)` windows (alone and together) and random
//! frees, in a small span (2^16 units, quantum 1) so it runs full and
//! requests fail. Every failure is checked by brute force: did a fitting
//! range exist among the free segments (kmem: `Arena::walk`; peers: the
//! span minus what they hold)? kmem must never fail while one exists.
//! Every success is checked against its constraints and for overlap.
//! Peers run the requests they can express (vmem: all; vm-allocator and
//! range-alloc: alignment only; offset-allocator: unconstrained only) and
//! skip the rest. Timed separately: the whole replay, interleaved.

use core::time::Duration;
use std::time::Instant;

use kmem_arena::{Arena, Constraints, Policy, WalkKinds};
use kmem_physmem::{PhysMem, PAGE_SIZE};

use crate::fitcheck::{fit_exists, trace, Kinds, Req, ReqExt, Shadow, Step};
use crate::interleave::{self, Contender};
use crate::range_alloc_peer::RangeAllocPeer;
use crate::range_peers::OffsetAlloc;
use crate::results::{Bench, Results};
use crate::suite::Config;
use crate::vm_allocator_peer::VmAllocator;
use crate::vmem_peer::{self, VmemArena};

/// Id and title.
pub const BENCH: Bench = Bench {
    id: "B7",
    title: "constrained xalloc (align, phase, nocross, min/max)",
};

/// The span.
pub const BASE: usize = 1 << 20;
/// See [`BASE`].
pub const LEN: usize = 1 << 16;
/// Trace seed.
pub const SEED: u64 = 0xb7_c0de;

/// A constrained range allocator (B7's and B12's contenders).
pub(crate) trait XAlloc {
    fn supports(&self, r: &Req) -> bool;
    fn xalloc(&self, r: &Req) -> Option<usize>;
    /// Frees a result; false when the allocator refuses its own result.
    fn xfree(&self, addr: usize, size: usize) -> bool;
    /// Its own free segments, where it can list them.
    fn free_segments(&self) -> Option<Vec<(usize, usize)>> {
        None
    }
    /// The start of its span (offset-allocator counts from 0).
    fn base(&self) -> usize {
        BASE
    }
}

impl XAlloc for Arena<'_> {
    fn supports(&self, _: &Req) -> bool {
        true
    }
    fn xalloc(&self, r: &Req) -> Option<usize> {
        if r.is_plain() {
            // What a user calls for an unconstrained request (the arena
            // has no quantum caches, so `xfree` frees it too).
            return Arena::alloc(self, r.size, Policy::InstantFit).ok();
        }
        let c = Constraints::new()
            .align(r.align)
            .phase(r.phase)
            .nocross(r.nocross)
            .min_addr(r.min)
            .max_addr(r.max);
        Arena::xalloc(self, r.size, &c).ok()
    }
    fn xfree(&self, addr: usize, size: usize) -> bool {
        Arena::xfree(self, addr, size).is_ok()
    }
    fn free_segments(&self) -> Option<Vec<(usize, usize)>> {
        let mut v = Vec::new();
        self.walk(WalkKinds::FREE, |s| v.push((s.start, s.size)));
        Some(v)
    }
}

impl XAlloc for VmemArena {
    fn supports(&self, _: &Req) -> bool {
        true
    }
    fn xalloc(&self, r: &Req) -> Option<usize> {
        if r.is_plain() {
            return vmem::Arena::alloc(self, r.size, vmem::AllocPolicy::InstantFit).ok();
        }
        let mut l = vmem::Layout::from_size_align(r.size, r.align)?.with_phase(r.phase);
        if r.nocross != 0 {
            l = l.with_nocross(r.nocross)?;
        }
        l = l.with_min(r.min);
        if r.max != usize::MAX {
            l = l.with_max(r.max);
        }
        vmem::Arena::xalloc(self, l, vmem::AllocPolicy::InstantFit).ok()
    }
    fn xfree(&self, addr: usize, _: usize) -> bool {
        vmem::Arena::free(self, addr).is_ok()
    }
}

impl XAlloc for VmAllocator {
    fn supports(&self, r: &Req) -> bool {
        r.align_only()
    }
    fn xalloc(&self, r: &Req) -> Option<usize> {
        self.try_alloc(r.size, r.align)
    }
    fn xfree(&self, addr: usize, size: usize) -> bool {
        crate::contender::RangeAlloc::free(self, addr, size);
        true
    }
}

impl XAlloc for RangeAllocPeer {
    fn supports(&self, r: &Req) -> bool {
        r.align_only()
    }
    fn xalloc(&self, r: &Req) -> Option<usize> {
        self.try_alloc_aligned(r.size, r.align)
    }
    fn xfree(&self, addr: usize, size: usize) -> bool {
        crate::contender::RangeAlloc::free(self, addr, size);
        true
    }
}

impl XAlloc for OffsetAlloc {
    fn supports(&self, r: &Req) -> bool {
        r.is_plain()
    }
    fn xalloc(&self, r: &Req) -> Option<usize> {
        self.try_alloc(r.size)
    }
    fn xfree(&self, addr: usize, size: usize) -> bool {
        crate::contender::RangeAlloc::free(self, addr, size);
        true
    }
    fn base(&self) -> usize {
        0
    }
}

/// What a checked replay found.
#[derive(Default, Debug, Clone, Copy)]
pub struct Outcome {
    /// Requests the allocator could express.
    pub requests: u64,
    /// Requests it could not (skipped).
    pub unsupported: u64,
    /// Requests refused.
    pub failures: u64,
    /// Refused although a fitting range existed.
    pub false_failures: u64,
    /// Results that broke a constraint, left the span or overlapped.
    pub violations: u64,
    /// Frees of its own results that the allocator refused.
    pub bad_frees: u64,
}

/// Replays `steps` on `x`; with `check`, verifies every result and every
/// failure (untimed use only).
fn replay<X: XAlloc>(x: &X, steps: &[Step], check: bool) -> Outcome {
    let mut o = Outcome::default();
    let mut live: Vec<(usize, usize)> = Vec::new();
    let offset = BASE - x.base();
    let mut shadow = Shadow::new(x.base(), LEN);
    for s in steps {
        match *s {
            Step::Alloc(r) => {
                // Peers counting from 0 see the request shifted down.
                let r = Req {
                    min: r.min.saturating_sub(offset),
                    max: r
                        .max
                        .saturating_sub(if r.max == usize::MAX { 0 } else { offset }),
                    phase: (r.phase + r.align - offset % r.align) % r.align,
                    ..r
                };
                if !x.supports(&r) {
                    o.unsupported += 1;
                    continue;
                }
                o.requests += 1;
                match x.xalloc(&r) {
                    Some(a) => {
                        if check && (!r.holds(a) || !shadow.insert(a, r.size)) {
                            o.violations += 1;
                        }
                        live.push((a, r.size));
                    }
                    None => {
                        o.failures += 1;
                        if check {
                            let free = x.free_segments().unwrap_or_else(|| shadow.free());
                            if fit_exists(&r, free) {
                                o.false_failures += 1;
                            }
                        }
                    }
                }
            }
            Step::Free(i) => {
                if !live.is_empty() {
                    let (a, n) = live.swap_remove(i as usize % live.len());
                    if x.xfree(a, n) {
                        if check {
                            shadow.remove(a);
                        }
                    } else {
                        o.bad_frees += 1;
                    }
                }
            }
        }
    }
    for (a, n) in live {
        if !x.xfree(a, n) {
            o.bad_frees += 1;
        }
    }
    o
}

/// Runs `f`, turning a panic into its message (printed once, without the
/// default hook's backtrace): a peer that panics on its own corrupted state
/// is a result, not the end of the suite.
pub(crate) fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    let msg = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let m2 = std::sync::Arc::clone(&msg);
    let old = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let loc = info
            .location()
            .map(|l| format!(" at {l}"))
            .unwrap_or_default();
        let text = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        *m2.lock().expect("panic message") = format!("{text}{loc}");
    }));
    let r = std::panic::catch_unwind(core::panic::AssertUnwindSafe(f));
    std::panic::set_hook(old);
    r.map_err(|_| msg.lock().expect("panic message").clone())
}

fn timed<'s, X: XAlloc>(
    make: impl Fn() -> X + 's,
    steps: &'s [Step],
) -> Box<dyn FnMut(u64) -> Duration + 's> {
    Box::new(move |n| {
        let mut total = Duration::ZERO;
        for _ in 0..n {
            let x = make();
            let t = Instant::now();
            replay(&x, steps, false);
            total += t.elapsed();
        }
        total
    })
}

/// Runs B7.
pub fn run(cfg: &Config, res: &mut Results) {
    let ram = PhysMem::new(16 << 20);
    let tags = ram.base_arena("tags", PAGE_SIZE);
    let kmem = || {
        Arena::builder("b7")
            .quantum(1)
            .span(BASE, LEN)
            .tags_from(&tags)
            .build()
            .expect("B7: kmem arena")
    };
    let vmem = || vmem_peer::arena("b7", 1, BASE, LEN, 4096);
    let vma = || VmAllocator::new(1, BASE, LEN);
    let ra = || RangeAllocPeer::new(BASE, LEN);
    let off = || OffsetAlloc::new(LEN, 1 << 16);
    let n = cfg.pick(20_000, 100_000);
    for kinds in [Kinds::All, Kinds::AlignOnly, Kinds::Plain] {
        let steps = trace(SEED, n, BASE, LEN, kinds);
        let param = |what: &str| format!("{}: {what}", kinds.name());
        let k = kmem();
        let mut outcomes = vec![
            ("kmem", guarded(|| replay(&k, &steps, true))),
            ("vmem", guarded(|| replay(&vmem(), &steps, true))),
        ];
        if kinds != Kinds::All {
            outcomes.push(("vm-allocator", guarded(|| replay(&vma(), &steps, true))));
            outcomes.push(("range-alloc", guarded(|| replay(&ra(), &steps, true))));
        }
        if kinds == Kinds::Plain {
            outcomes.push(("offset-allocator", guarded(|| replay(&off(), &steps, true))));
        }
        k.check()
            .expect("B7: kmem arena inconsistent after the replay");
        assert_eq!(k.stats().live, 0, "B7: kmem arena not empty");
        drop(k);
        let mut cs: Vec<Contender<'_>> = Vec::new();
        for (name, o) in outcomes {
            let o = match o {
                Ok(o) => o,
                Err(msg) => {
                    let rec = res.push(
                        BENCH,
                        &param("false failures per 10^4 requests"),
                        name,
                        "per 10^4",
                        f64::NAN,
                        1,
                        None,
                        false,
                    );
                    rec.note = format!("panicked during the replay: {msg}");
                    continue;
                }
            };
            let rate = o.false_failures as f64 / o.requests.max(1) as f64 * 1e4;
            let rec = res.push(
                BENCH,
                &param("false failures per 10^4 requests"),
                name,
                "per 10^4",
                rate,
                1,
                None,
                name == "kmem",
            );
            rec.note = format!(
                "{} requests, {} refused, {} refused while a fit existed, {} results breaking \
                 a constraint or overlapping, {} frees of its own results refused",
                o.requests, o.failures, o.false_failures, o.violations, o.bad_frees
            );
            res.push(
                BENCH,
                &param("results breaking a constraint"),
                name,
                "count",
                o.violations as f64,
                1,
                None,
                name == "kmem",
            );
            let run = match name {
                "kmem" => timed(kmem, &steps),
                "vmem" => timed(vmem, &steps),
                "vm-allocator" => timed(vma, &steps),
                "range-alloc" => timed(ra, &steps),
                _ => timed(off, &steps),
            };
            cs.push(Contender {
                label: name.to_string(),
                run,
            });
        }
        let r = interleave::run(&mut cs, cfg.pick(5, 11), cfg.batch());
        drop(cs);
        res.push_rounds(
            BENCH,
            &param("whole replay"),
            "ns/step",
            &r,
            Some(0),
            steps.len() as f64,
        );
    }
    res.note(
        BENCH.id,
        format!(
            "{n} steps per trace (55 % allocations of 1..=1024 units, 45 % frees of a random \
             live one), span 2^16 units, quantum 1; \"all constraints\": one in six each plain, \
             aligned, aligned with phase, nocross, windowed, all at once; vmem gets max as the \
             exclusive end bound kmem uses; unconstrained requests go to `alloc` (instant \
             fit) for kmem and vmem, the rest to `xalloc`; a peer that panics is reported, not timed"
        ),
    );
}
