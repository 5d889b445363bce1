//! B2, the working set (Larson-like): K = 10^3, 10^4, 10^5 live objects of
//! Pareto sizes up to 1 KiB, replaced one at a time in random slot order,
//! or allocated as a batch of K and freed LIFO, FIFO or in random order;
//! ns per alloc+free pair, and the peak bytes each allocator took from its
//! backing memory (an untimed replay; see [`Footprint`](crate::suite::stack::Footprint)). kmem is kmalloc.

use core::alloc::GlobalAlloc;
use core::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use crate::interleave::{self, Contender};
use crate::larson::{batch, Churn, LarsonTrace, Order};
use crate::results::{Bench, Results};
use crate::suite::footprint::{baseline, read, HighWater};
use crate::suite::stack::{Entry, Stack, Visit};
use crate::suite::Config;

/// Id and title.
pub const BENCH: Bench = Bench {
    id: "B2",
    title: "working set (Larson-like, Pareto sizes <= 1 KiB)",
};

/// Live-set sizes.
pub const LIVE: [usize; 3] = [1_000, 10_000, 100_000];

/// Live sets above this skip the linear-time peers (linked_list, buddy).
pub const LINEAR_CAP: usize = 10_000;

/// Seed of the traces.
pub const SEED: u64 = 0x1a45_0b2e;

type Cleanup<'c> = Box<dyn FnOnce() + 'c>;

struct V<'v, 'c> {
    cs: &'v mut Vec<Contender<'c>>,
    peaks: &'v mut Vec<Option<f64>>,
    cleanup: &'v mut Vec<Cleanup<'c>>,
    skipped: &'v mut Vec<&'static str>,
    trace: &'c LarsonTrace,
    order: Option<Order>,
}

impl<'c> Visit<'c> for V<'_, 'c> {
    fn visit<A: GlobalAlloc + Sync + 'c>(&mut self, e: Entry<'c, A>) {
        let Entry {
            name,
            a,
            fp,
            linear,
        } = e;
        let (trace, k) = (self.trace, self.trace.live);
        if linear && k > LINEAR_CAP {
            self.skipped.push(name);
            return;
        }
        // Untimed replay for the peak footprint.
        let base = baseline(&fp);
        let hw = HighWater::new(a);
        let mut peak = None;
        match self.order {
            Some(o) => {
                let mut held = vec![0; k];
                batch(&hw, trace, &mut held, o, || peak = read(&fp, &hw, base));
            }
            None => {
                let mut c = Churn::new(&hw, trace);
                c.steps(&hw, trace, 2 * k as u64);
                peak = read(&fp, &hw, base);
                c.finish(&hw);
            }
        }
        self.peaks.push(peak);
        match self.order {
            Some(o) => {
                let mut held = vec![0; k];
                self.cs.push(Contender::new(name, move || {
                    batch(a, trace, &mut held, o, || {});
                }));
            }
            None => {
                let churn = Rc::new(RefCell::new(Some(Churn::new(a, trace))));
                let c2 = Rc::clone(&churn);
                self.cs.push(Contender {
                    label: name.to_string(),
                    run: Box::new(move |n| {
                        let mut g = churn.borrow_mut();
                        let c = g.as_mut().expect("live set");
                        let start = Instant::now();
                        c.steps(a, trace, n);
                        start.elapsed()
                    }),
                });
                self.cleanup
                    .push(Box::new(move || c2.take().expect("live set").finish(a)));
            }
        }
    }
}

/// `10^k` for the parameter names (plain below 1000).
pub fn pow10(n: usize) -> String {
    let k = (n as f64).log10().round() as u32;
    if n >= 1000 && 10usize.pow(k) == n {
        format!("10^{k}")
    } else {
        n.to_string()
    }
}

/// Runs B2.
pub fn run(cfg: &Config, s: &Stack<'_, '_, '_>, res: &mut Results) {
    for live in LIVE {
        let trace = LarsonTrace::new(SEED ^ live as u64, live);
        for order in [
            None,
            Some(Order::Lifo),
            Some(Order::Fifo),
            Some(Order::Random),
        ] {
            let param = format!("K={} {}", pow10(live), order.map_or("replace", Order::name));
            let (mut cs, mut peaks, mut cleanup, mut skipped) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            s.each(&mut V {
                cs: &mut cs,
                peaks: &mut peaks,
                cleanup: &mut cleanup,
                skipped: &mut skipped,
                trace: &trace,
                order,
            });
            let r = interleave::run(&mut cs, cfg.rounds(), cfg.batch());
            drop(cs);
            cleanup.into_iter().for_each(|f| f());
            let per_op = if order.is_some() { live as f64 } else { 1.0 };
            res.push_rounds(BENCH, &param, "ns/pair", &r, Some(0), per_op);
            let kmem_peak = peaks[0];
            for (label, peak) in r.labels.iter().zip(&peaks) {
                let (value, ratio) = match (peak, kmem_peak) {
                    (Some(p), Some(k)) => (p / 1024.0, Some(p / k)),
                    _ => (f64::NAN, None),
                };
                let rec = res.push(
                    BENCH,
                    &format!("{param}, peak"),
                    label,
                    "KiB",
                    value,
                    1,
                    ratio,
                    label == "kmalloc",
                );
                if peak.is_none() {
                    rec.note = "not measurable: process heap".into();
                }
            }
            if !skipped.is_empty() {
                res.note(
                    BENCH.id,
                    format!(
                        "{param}: {} skipped (linear-time per operation; a batch takes minutes at this K)",
                        skipped.join(", ")
                    ),
                );
            }
        }
    }
    res.note(
        BENCH.id,
        format!(
            "peak bytes: kmalloc = its base arena's allocated bytes at the peak minus after a reap \
             (spans, slabs, metadata); talc, linked_list, rlsf = highest end address handed \
             out minus their region's start; buddy = its own count of allocated bytes \
             (power-of-two rounding included); slabmalloc = peak pages handed to it after a reclaim; \
             mimalloc and System not measurable in-process. Mean size {:.0} B.",
            LarsonTrace::new(SEED, 1000).mean_size()
        ),
    );
}
