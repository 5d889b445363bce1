//! B10's driver: Larson's thread hand-off (Larson and Krishnan's server
//! benchmark, as mimalloc-bench runs it in `larson`). Each of T chains owns
//! a live set ([`Lanes`]: a [`Churn`] of the B2 trace's Pareto sizes) and
//! runs as a succession of short-lived threads: a thread makes its share of
//! replacements (free the object in a random slot, allocate a new size into
//! it), then starts the chain's next thread, hands it the live set and
//! exits. So the objects one thread allocated are freed by another, every
//! thread's start and exit falls inside the measurement (for kmem: a CPU
//! slot claimed, then flushed and given back), and with more chains than
//! CPUs, and lives longer than the scheduler's time slice, threads are
//! preempted in the middle of their lives, allocator calls included.
//!
//! [`run`] measures every contender at every thread count (up to its
//! [`Contender::up_to`]), interleaved: in each round every (contender,
//! thread count) runs once, the order reversed on odd rounds; the first
//! round is a warm-up and is discarded. A
//! measurement is the wall time from starting the chains' first threads to
//! the end of their last ones. Every thread count makes about the same
//! number of replacements ([`Plan::pairs`]) in lives of the same length
//! ([`Plan::steps`]), so every thread count starts and stops about the same
//! number of threads.

use core::alloc::GlobalAlloc;
use core::time::Duration;
use std::thread::Scope;
use std::time::Instant;

use crate::larson::{Churn, LarsonTrace, TRACE_LEN};
use crate::stats::median;

/// Runs `lanes.len()` chains of `generations` threads each: each thread
/// runs `work` on its chain's lane, then starts the next thread of its
/// chain with the lane and exits. Returns the wall time from the first
/// start to the end of the last thread.
///
/// # Panics
/// Panics if a thread panics (after every chain has ended).
pub fn chains<L: Send, W: Fn(&mut L) + Sync>(
    lanes: &mut [L],
    generations: usize,
    work: &W,
) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for lane in lanes {
            s.spawn(move || life(s, lane, generations, work));
        }
    });
    start.elapsed()
}

/// One thread of a chain: its work, then the chain's next thread (`left`
/// threads remain, this one included).
fn life<'s, L: Send, W: Fn(&mut L) + Sync>(
    s: &'s Scope<'s, '_>,
    lane: &'s mut L,
    left: usize,
    work: &'s W,
) {
    work(lane);
    if left > 1 {
        s.spawn(move || life(s, lane, left - 1, work));
    }
}

/// One allocator's live sets, one per chain, filled on the calling thread
/// and kept from one measurement to the next.
pub struct Lanes<'t> {
    trace: &'t LarsonTrace,
    sets: Vec<Churn>,
}

impl<'t> Lanes<'t> {
    /// `n` live sets of `trace.live` objects from `a`, each following the
    /// trace from its own point (`TRACE_LEN / n` apart).
    pub fn new<A: GlobalAlloc + ?Sized>(a: &A, trace: &'t LarsonTrace, n: usize) -> Self {
        let sets = (0..n)
            .map(|i| Churn::new_at(a, trace, i * (TRACE_LEN / n.max(1))))
            .collect();
        Self { trace, sets }
    }

    /// One measurement: the first `threads` live sets as chains of
    /// `generations` threads making `steps` replacements each.
    ///
    /// # Panics
    /// Panics if `threads` is above the number of live sets.
    pub fn run<A: GlobalAlloc + Sync>(
        &mut self,
        a: &A,
        threads: usize,
        generations: usize,
        steps: u64,
    ) -> Duration {
        let trace = self.trace;
        chains(&mut self.sets[..threads], generations, &|c: &mut Churn| {
            c.steps(a, trace, steps);
        })
    }

    /// Frees every live set (on the calling thread).
    pub fn finish<A: GlobalAlloc + ?Sized>(self, a: &A) {
        for c in self.sets {
            c.finish(a);
        }
    }
}

/// How much to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Rounds kept (one more, the first, is run and discarded).
    pub rounds: usize,
    /// Replacements per measurement, all threads together (about: whole
    /// generations are run).
    pub pairs: u64,
    /// Replacements per thread life.
    pub steps: u64,
}

impl Plan {
    /// Threads per chain at `threads` chains: `pairs / (threads * steps)`,
    /// at least 1.
    pub fn generations(&self, threads: usize) -> usize {
        (self.pairs / (threads as u64 * self.steps).max(1)).max(1) as usize
    }
}

/// A contender of [`run`]: a label and `run(threads, generations)`, which
/// runs one measurement and returns its wall time.
pub struct Contender<'f> {
    /// Row label.
    pub label: String,
    /// The most threads it is measured at (larger counts are skipped).
    pub most: usize,
    run: Box<dyn FnMut(usize, usize) -> Duration + 'f>,
}

impl<'f> Contender<'f> {
    /// A contender measured by `run(threads, generations)` at every count.
    pub fn new(label: impl Into<String>, run: impl FnMut(usize, usize) -> Duration + 'f) -> Self {
        Self {
            label: label.into(),
            most: usize::MAX,
            run: Box::new(run),
        }
    }

    /// Skips thread counts above `most`.
    #[must_use]
    pub fn up_to(self, most: usize) -> Self {
        Self { most, ..self }
    }
}

/// The measurements of [`run`].
pub struct Handoff {
    /// Contender labels, in the order given.
    pub labels: Vec<String>,
    /// Thread counts (chains), as given.
    pub counts: Vec<usize>,
    /// Threads per chain at each count.
    pub generations: Vec<usize>,
    /// Replacements per thread life.
    pub steps: u64,
    /// `wall[w][t][r]`: seconds of contender `w` at `counts[t]` threads in
    /// kept round `r` (no rounds where the count is above its
    /// [`most`](Contender::most)).
    pub wall: Vec<Vec<Vec<f64>>>,
}

/// Measures every contender at every thread count in `counts`, interleaved
/// as the [module docs](self) say.
///
/// # Panics
/// Panics if `contenders` or `counts` is empty.
pub fn run(contenders: &mut [Contender<'_>], counts: &[usize], plan: &Plan) -> Handoff {
    assert!(
        !contenders.is_empty() && !counts.is_empty(),
        "nothing to measure"
    );
    let generations: Vec<usize> = counts.iter().map(|&n| plan.generations(n)).collect();
    let configs: Vec<(usize, usize)> = (0..counts.len())
        .flat_map(|t| (0..contenders.len()).map(move |w| (w, t)))
        .filter(|&(w, t)| counts[t] <= contenders[w].most)
        .collect();
    let mut wall = vec![vec![Vec::with_capacity(plan.rounds); counts.len()]; contenders.len()];
    for r in 0..=plan.rounds {
        let mut order = configs.clone();
        if r % 2 == 1 {
            order.reverse();
        }
        for (w, t) in order {
            let d = (contenders[w].run)(counts[t], generations[t]);
            if r > 0 {
                wall[w][t].push(d.as_secs_f64());
            }
        }
    }
    Handoff {
        labels: contenders.iter().map(|c| c.label.clone()).collect(),
        counts: counts.to_vec(),
        generations,
        steps: plan.steps,
        wall,
    }
}

impl Handoff {
    /// True when contender `w` was measured at thread-count index `t`.
    pub fn measured(&self, w: usize, t: usize) -> bool {
        !self.wall[w][t].is_empty()
    }

    /// Replacements (alloc+free pairs) of one measurement at thread-count
    /// index `t`.
    pub fn pairs(&self, t: usize) -> u64 {
        self.counts[t] as u64 * self.generations[t] as u64 * self.steps
    }

    /// Wall nanoseconds per pair, all threads together, of contender `w` at
    /// thread-count index `t`, per round.
    pub fn ns_per_pair(&self, w: usize, t: usize) -> Vec<f64> {
        let pairs = self.pairs(t) as f64;
        self.wall[w][t].iter().map(|s| s * 1e9 / pairs).collect()
    }

    /// Median over rounds of contender `w`'s time over contender `base`'s,
    /// both at thread-count index `t`.
    pub fn time_ratio(&self, w: usize, base: usize, t: usize) -> f64 {
        let ratios: Vec<f64> = self.wall[w][t]
            .iter()
            .zip(&self.wall[base][t])
            .map(|(a, b)| a / b)
            .collect();
        median(&ratios)
    }
}

#[cfg(test)]
mod tests {
    use core::alloc::{GlobalAlloc, Layout};
    use std::alloc::System;
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;
    use std::thread::{self, ThreadId};

    use super::{chains, run, Contender, Lanes, Plan};
    use crate::larson::LarsonTrace;

    /// System, with a ledger of live objects: which layout and which thread
    /// allocated each one; counts the frees made on another thread.
    #[derive(Default)]
    struct Ledger {
        live: Mutex<HashMap<usize, (Layout, ThreadId)>>,
        allocs: Mutex<Vec<ThreadId>>,
        frees: Mutex<(u64, u64)>,
    }

    // SAFETY: forwards to System; the ledger only records and checks.
    unsafe impl GlobalAlloc for Ledger {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            // SAFETY: the caller's layout, passed on.
            let p = unsafe { System.alloc(l) };
            assert!(!p.is_null());
            let me = thread::current().id();
            let old = self.live.lock().unwrap().insert(p as usize, (l, me));
            assert!(old.is_none(), "address handed out twice");
            self.allocs.lock().unwrap().push(me);
            p
        }

        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            let (had, by) = self
                .live
                .lock()
                .unwrap()
                .remove(&(p as usize))
                .expect("freed twice, or never allocated");
            assert_eq!(had, l, "freed with another layout");
            let mut f = self.frees.lock().unwrap();
            f.0 += 1;
            f.1 += u64::from(by != thread::current().id());
            // SAFETY: allocated by System with `l` (the ledger says so).
            unsafe { System.dealloc(p, l) };
        }
    }

    #[test]
    fn every_object_is_freed_once_across_threads() {
        let (live, chains_n, gens, steps) = (16, 3, 4, 50u64);
        let trace = LarsonTrace::new(7, live);
        let a = Ledger::default();
        let mut lanes = Lanes::new(&a, &trace, chains_n);
        let main = thread::current().id();
        assert_eq!(a.live.lock().unwrap().len(), chains_n * live);
        assert!(a.live.lock().unwrap().values().all(|&(_, t)| t == main));
        lanes.run(&a, chains_n, gens, steps);
        // Every thread of every chain allocated, and each was a new thread.
        let allocs = a.allocs.lock().unwrap().clone();
        let threads: HashSet<_> = allocs.iter().collect();
        assert_eq!(threads.len(), 1 + chains_n * gens);
        let pairs = (chains_n * gens) as u64 * steps;
        assert_eq!(allocs.len() as u64, (chains_n * live) as u64 + pairs);
        let (frees, remote) = *a.frees.lock().unwrap();
        assert_eq!(frees, pairs);
        // Each life's first free is of an object another thread allocated.
        assert!(remote >= (chains_n * gens) as u64, "{remote} remote frees");
        assert_eq!(a.live.lock().unwrap().len(), chains_n * live);
        lanes.finish(&a);
        assert!(a.live.lock().unwrap().is_empty());
        assert_eq!(a.frees.lock().unwrap().0, allocs.len() as u64);
    }

    #[test]
    fn chains_hand_each_lane_down_its_generations() {
        let mut lanes = vec![Vec::new(); 5];
        chains(&mut lanes, 3, &|v: &mut Vec<ThreadId>| {
            v.push(thread::current().id());
        });
        let all: HashSet<_> = lanes.iter().flatten().collect();
        assert_eq!(all.len(), 15, "every life is a thread of its own");
        assert!(lanes.iter().all(|v| v.len() == 3));
    }

    #[test]
    fn rounds_cover_every_config() {
        let plan = Plan {
            rounds: 3,
            pairs: 400,
            steps: 50,
        };
        assert_eq!(plan.generations(1), 8);
        assert_eq!(plan.generations(16), 1);
        let mut seen = Vec::new();
        let mut cs = [
            Contender::new("a", |t, g| chains(&mut vec![(); t], g, &|_: &mut ()| {})),
            Contender::new("b", |t, g| {
                seen.push((t, g));
                chains(&mut vec![(); t], g, &|_: &mut ()| {})
            }),
            Contender::new("c", |t, g| chains(&mut vec![(); t], g, &|_: &mut ()| {})).up_to(2),
        ];
        let h = run(&mut cs, &[1, 4], &plan);
        drop(cs);
        assert_eq!(seen.len(), 2 * 4);
        assert!(seen.contains(&(1, 8)) && seen.contains(&(4, 2)));
        assert!(h.measured(2, 0) && !h.measured(2, 1));
        assert_eq!(h.wall[2][0].len(), 3);
        assert_eq!(h.pairs(0), 400);
        assert_eq!(h.pairs(1), 400);
        assert!(h.wall[..2]
            .iter()
            .all(|w| w.len() == 2 && w.iter().all(|r| r.len() == 3)));
        assert_eq!(h.ns_per_pair(1, 1).len(), 3);
        assert_eq!(h.time_ratio(0, 0, 1), 1.0);
    }
}
