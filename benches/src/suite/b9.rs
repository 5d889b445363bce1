//! B9, import chains and reap: an arena importing from an arena importing
//! from an arena importing from the base (3 levels, like heap -> va ->
//! default), against 1 level and the base itself. Timed: a 4-page pair
//! that, on an empty importing arena, imports its span through every level
//! and releases it back on the free. Then memory returned: a burst of
//! allocations through the 3-level chain, everything freed, each level
//! reaped, and the base arena's free bytes compared; and the same for
//! kmalloc (a burst of 10^5 Pareto-sized objects, freed, `reap`).

use kmalloc::Config as KConfig;
use kmem_arena::{Arena, Policy};
use kmem_magazine::ThreadCpus;
use kmem_physmem::{PhysMem, Rng, PAGE_SIZE};

use crate::interleave::{self, Contender};
use crate::larson::{LarsonTrace, Order};
use crate::results::{Bench, Results};
use crate::suite::Config;

/// Id and title.
pub const BENCH: Bench = Bench {
    id: "B9",
    title: "import chains and reap",
};

fn level<'a>(name: &str, source: &'a Arena<'a>, tags: &'a Arena<'a>) -> Arena<'a> {
    Arena::builder(name)
        .quantum(PAGE_SIZE)
        .source(source)
        .tags_from(tags)
        .build()
        .expect("B9: importing arena")
}

/// A 4-page alloc+free pair on a memory arena (freed with the unsafe
/// `free_memory`: the safe `free` refuses memory arenas).
fn pair(a: &Arena<'_>) {
    let p = a
        .alloc(4 * PAGE_SIZE, Policy::InstantFit)
        .expect("B9: alloc");
    // SAFETY: allocated just above with this size, never used.
    unsafe { a.free_memory(core::hint::black_box(p), 4 * PAGE_SIZE) }.expect("B9: free");
}

/// Runs B9.
pub fn run(cfg: &Config, res: &mut Results) {
    let ram = PhysMem::new(256 << 20);
    let base = ram.base_arena("base", PAGE_SIZE);
    let mut l1 = level("l1", &base, &base);
    let mut one = level("one", &base, &base);
    {
        let mut l2 = level("l2", &l1, &base);
        {
            let mut l3 = level("l3", &l2, &base);
            let mut cs = [
                Contender::new("3-level chain", || pair(&l3)),
                Contender::new("1-level import", || pair(&one)),
                Contender::new("base arena (no import)", || pair(&base)),
            ];
            let r = interleave::run(&mut cs, cfg.rounds(), cfg.batch());
            drop(cs);
            res.push_rounds(
                BENCH,
                "4-page pair through imports",
                "ns/pair",
                &r,
                Some(0),
                1.0,
            );
            let imports = l3.stats().imports;
            res.note(
                BENCH.id,
                format!("the 3-level arena imported {imports} spans in the timed pass (one per pair: it gives each back when wholly free)"),
            );
            burst(&base, &l3, &l2, &l1, res);
            l3.destroy().expect("B9: destroy l3");
        }
        l2.destroy().expect("B9: destroy l2");
    }
    l1.destroy().expect("B9: destroy l1");
    one.destroy().expect("B9: destroy one");
    base.check().expect("B9: base inconsistent");
    kmalloc_reap(res);
}

fn burst(base: &Arena<'_>, l3: &Arena<'_>, l2: &Arena<'_>, l1: &Arena<'_>, res: &mut Results) {
    let free0 = base.amt_free();
    let mut rng = Rng::new(0xb9);
    let held: Vec<(usize, usize)> = (0..5_000)
        .map(|_| {
            let n = rng.range(1, 9) * PAGE_SIZE;
            (l3.alloc(n, Policy::InstantFit).expect("B9: burst"), n)
        })
        .collect();
    let taken = free0 - base.amt_free();
    for (p, n) in held {
        // SAFETY: allocated above with this size, never used.
        unsafe { l3.free_memory(p, n) }.expect("B9: free");
    }
    for a in [l3, l2, l1] {
        a.reap();
    }
    let back = base.amt_free() - (free0 - taken);
    let p = "3-level chain: burst of 5000 allocations (1-8 pages), free all, reap";
    res.push(
        BENCH,
        p,
        "bytes taken from the base at the peak",
        "MiB",
        taken as f64 / (1 << 20) as f64,
        1,
        None,
        true,
    );
    let rec = res.push(
        BENCH,
        p,
        "returned to the base after free + reap",
        "%",
        back as f64 / taken as f64 * 100.0,
        1,
        None,
        true,
    );
    rec.note = format!("{} of {} bytes", back, taken);
}

fn kmalloc_reap(res: &mut Results) {
    let mut mem = vec![0u8; 128 << 20];
    let trace = LarsonTrace::new(0xb9, 100_000);
    kmalloc::boot(&mut mem, ThreadCpus::global(), &KConfig::default(), |k| {
        let base = k.caches().base();
        let before = base.stats().allocated;
        let mut held = vec![0usize; trace.live];
        let mut peak = 0;
        crate::larson::batch(k, &trace, &mut held, Order::Random, || {
            peak = base.stats().allocated;
        });
        let after_free = base.stats().allocated;
        let reaped = k.reap();
        let after_reap = base.stats().allocated;
        let taken = peak - before;
        let p = "kmalloc: burst of 10^5 Pareto objects, free all, reap";
        res.push(BENCH, p, "bytes taken from the base at the peak", "MiB", taken as f64 / (1 << 20) as f64, 1, None, true);
        let rec = res.push(
            BENCH,
            p,
            "returned to the base after free + reap",
            "%",
            (peak - after_reap) as f64 / taken as f64 * 100.0,
            1,
            None,
            true,
        );
        rec.note = format!(
            "held after the frees, before reap: {:.1} % of the peak's; reap reported {reaped} bytes",
            (after_free - before) as f64 / taken as f64 * 100.0
        );
    })
    .expect("B9: kmalloc boot");
}
