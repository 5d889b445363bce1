//! B5, vmem latency against fragmentation (Bonwick & Adams' figure 4.5.1):
//! F one-unit free segments, each fenced by a live one, below a large free
//! tail ([`fragment`]); the timed pair allocates 2 units (no hole fits, so
//! every allocator must find the tail) and frees them. Contenders: kmem
//! instant, best and next fit, the `vmem`, `vm-allocator`, `range-alloc`,
//! `offset-allocator` crates and rlsf as a range allocator, all behind the
//! same spin lock. A second group interleaves kmem instant fit across all
//! F at once: the flatness target (slowest/fastest F).

use kmem_arena::{Arena, Policy};
use kmem_physmem::{PhysMem, PAGE_SIZE};

use crate::contender::{fragment, pair, Fitted};
use crate::fixture::{id_arena, tag_memory_bytes, SPACE_BASE, SPACE_SIZE};
use crate::interleave::{self, Contender};
use crate::range_alloc_peer::RangeAllocPeer;
use crate::range_peers::{OffsetAlloc, RlsfRange};
use crate::results::{Bench, Results};
use crate::suite::b2::pow10;
use crate::suite::Config;
use crate::vm_allocator_peer::VmAllocator;
use crate::vmem_peer;

/// Id and title.
pub const BENCH: Bench = Bench {
    id: "B5",
    title: "vmem latency against free segments (2-unit alloc+free)",
};

/// Free-segment counts.
pub const FREE: [usize; 7] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000];

/// Largest F for vm-allocator: building takes O(F^2) (each first-match
/// allocation walks every node below the tail).
pub const VM_ALLOCATOR_CAP: usize = 10_000;

/// Parameter of the flatness target's record.
pub const FLATNESS: &str = "flatness: slowest/fastest F, median per round";

/// Units of the timed request.
pub const REQUEST: usize = 2;

/// The parameter name of F.
pub fn param(f: usize) -> String {
    format!("F={}", pow10(f))
}

/// Runs B5.
pub fn run(cfg: &Config, res: &mut Results) {
    let range_alloc_cap = cfg.pick(10_000, 100_000);
    for f in FREE {
        one(cfg, res, f, range_alloc_cap);
    }
    res.note(
        BENCH.id,
        format!(
            "vm-allocator only up to F={} and range-alloc up to F={} (building F holes costs \
             O(F^2): a first-match walk per allocation, a Vec scan per free); offset-allocator \
             in u32 units; rlsf as a range allocator of 32-byte blocks; vmem with a \
             preallocated tag pool, holes freed highest first (its hash chains put the newest \
             first). Every pair takes its 2 units from the tail.",
            pow10(VM_ALLOCATOR_CAP),
            pow10(range_alloc_cap)
        ),
    );
    flatness(cfg, res);
}

fn one(cfg: &Config, res: &mut Results, f: usize, range_alloc_cap: usize) {
    let ram = PhysMem::new(tag_memory_bytes(3 * (2 * f + 8)));
    let base = ram.base_arena("tags", PAGE_SIZE);
    let arenas: Vec<Arena<'_>> = (0..3).map(|_| id_arena("b5", &base, 1)).collect();
    let fits: Vec<Fitted<'_, '_>> = arenas
        .iter()
        .zip([Policy::InstantFit, Policy::BestFit, Policy::NextFit])
        .map(|(arena, policy)| Fitted { arena, policy })
        .collect();
    for a in &fits {
        fragment(a, f, false);
    }
    let vmem = vmem_peer::arena("vmem", 1, SPACE_BASE, SPACE_SIZE, 2 * f + 64);
    fragment(&vmem, f, true);
    let vma = (f <= VM_ALLOCATOR_CAP).then(|| {
        let a = VmAllocator::new(1, SPACE_BASE, SPACE_SIZE);
        fragment(&a, f, false);
        a
    });
    let ra = (f <= range_alloc_cap).then(|| {
        let a = RangeAllocPeer::new(SPACE_BASE, SPACE_SIZE);
        fragment(&a, f, false);
        a
    });
    let off = OffsetAlloc::new(4 * f + (1 << 16), (2 * f + 1024) as u32);
    fragment(&off, f, false);
    let rl = RlsfRange::new(2 * f + 1024);
    fragment(&rl, f, false);
    for a in &arenas {
        a.check().expect("B5: kmem arena inconsistent");
        assert_eq!(a.stats().free_segments, f + 1, "B5: kmem holes");
    }
    let mut cs: Vec<Contender<'_>> = Vec::new();
    for (a, name) in fits.iter().zip(["kmem instant", "kmem best", "kmem next"]) {
        cs.push(Contender::new(name, move || pair(a, REQUEST)));
    }
    cs.push(Contender::new("vmem", || pair(&vmem, REQUEST)));
    if let Some(a) = &vma {
        cs.push(Contender::new("vm-allocator", move || pair(a, REQUEST)));
    }
    if let Some(a) = &ra {
        cs.push(Contender::new("range-alloc", move || pair(a, REQUEST)));
    }
    cs.push(Contender::new("offset-allocator", || pair(&off, REQUEST)));
    cs.push(Contender::new("rlsf", || pair(&rl, REQUEST)));
    let r = interleave::run(&mut cs, cfg.rounds(), cfg.batch());
    drop(cs);
    res.push_rounds(BENCH, &param(f), "ns/pair", &r, Some(0), 1.0);
    for a in &arenas {
        a.check()
            .expect("B5: kmem arena inconsistent after the run");
    }
}

/// kmem instant fit at every F in the same rounds: the flatness target.
fn flatness(cfg: &Config, res: &mut Results) {
    let segments: usize = FREE.iter().map(|f| 2 * f + 8).sum();
    let ram = PhysMem::new(tag_memory_bytes(segments));
    let base = ram.base_arena("tags", PAGE_SIZE);
    let arenas: Vec<Arena<'_>> = FREE.iter().map(|_| id_arena("flat", &base, 1)).collect();
    for (a, &f) in arenas.iter().zip(&FREE) {
        fragment(a, f, false);
    }
    let mut cs: Vec<Contender<'_>> = arenas
        .iter()
        .zip(FREE)
        .map(|(a, f)| Contender::new(param(f), move || pair(a, REQUEST)))
        .collect();
    let r = interleave::run(&mut cs, cfg.rounds().max(31), cfg.batch());
    drop(cs);
    for (c, label) in r.labels.iter().enumerate() {
        let rec = res.push(
            BENCH,
            &format!("{label}, every F in the same rounds"),
            "kmem instant",
            "ns/pair",
            r.median_ns(c),
            r.ns[c].len(),
            Some(r.median_ratio(c, 0)),
            c == 0,
        );
        rec.note = "ratio: to F=1 in the same rounds".into();
    }
    let rec = res.push(
        BENCH,
        FLATNESS,
        "kmem instant",
        "x",
        r.median_spread(),
        r.ns[0].len(),
        None,
        true,
    );
    rec.note = "median over rounds of (slowest F / fastest F): the target's statistic".into();
    let medians: Vec<f64> = (0..r.labels.len()).map(|c| r.median_ns(c)).collect();
    let rec = res.push(
        BENCH,
        "flatness: slowest/fastest median",
        "kmem instant",
        "x",
        crate::stats::spread(&medians),
        r.ns[0].len(),
        None,
        true,
    );
    rec.note =
        "slowest F's median over fastest F's median (less sensitive to one noisy batch)".into();
}
