//! Throughput of T threads sharing one object allocator, measured as the
//! project's fairness rules ask: every (contender, thread count) pair runs
//! once per round, all of them interleaved round by round (reversed on odd
//! rounds), on one set of worker threads that live for the whole run, so
//! speedups and ratios are per-round ratios inside one process.
//!
//! Each worker runs the same fixed number of [`cycle`]s per measurement:
//! [`PAIRS_PER_CYCLE`] alloc+free pairs, then a LIFO batch of [`BATCH`]
//! objects, which is more than a CPU's two magazines hold at the starting
//! magazine size of 64-byte objects (2 × 15), so the depot is visited now
//! and then. A measurement's time is from the first participating worker's
//! start to the last one's end, each worker timestamping itself. Workers
//! meet at a sleeping barrier before each measurement, then the participants
//! meet again at a spinning gate, so a late wake-up from the barrier (up to
//! milliseconds on a VM whose idle vCPU the host has descheduled) delays
//! the start instead of stretching the measurement; the median start skew
//! that remains is reported. Workers that do not take part wait on the
//! barrier, asleep. Threads are not pinned to CPUs (std has no portable
//! affinity call); on a 2-vCPU VM the scheduler decides where they run.
//!
//! A [`control`](Workload::control) workload that allocates nothing (a
//! multiply-add chain per thread, no shared memory) runs in the same rounds:
//! its speedup is what the machine gave in parallel at that moment (on a
//! shared VM a neighbour may hold a core), and each contender's speedup is
//! also reported relative to it.

use core::hint::{black_box, spin_loop};
use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;
use std::sync::Barrier;
use std::time::Instant;

use crate::interleave::median;
use crate::object::{lifo, pair, ObjectAlloc};

/// Environment variable with the thread counts to measure, comma-separated
/// (`KMEM_BENCH_THREADS=1,2,4,8,16`).
pub const THREADS_ENV: &str = "KMEM_BENCH_THREADS";

/// Thread counts measured when [`THREADS_ENV`] is unset.
pub const DEFAULT_THREADS: [usize; 2] = [1, 2];

/// Alloc+free pairs per cycle, before the batch.
pub const PAIRS_PER_CYCLE: usize = 48;

/// Objects of the LIFO batch at the end of each cycle.
pub const BATCH: usize = 32;

/// Alloc+free pairs per cycle, the batch's included.
pub const OPS_PER_CYCLE: u64 = (PAIRS_PER_CYCLE + BATCH) as u64;

/// One cycle of the per-thread workload: [`PAIRS_PER_CYCLE`] pairs, then
/// [`BATCH`] allocations freed newest first.
#[inline]
pub fn cycle<A: ObjectAlloc + ?Sized>(a: &A) {
    for _ in 0..PAIRS_PER_CYCLE {
        pair(a);
    }
    let mut held = [0usize; BATCH];
    lifo(a, &mut held);
}

/// Parses a comma-separated list of thread counts: sorted, deduplicated,
/// each at least 1.
///
/// # Errors
/// A message naming the bad entry.
pub fn parse_counts(list: &str) -> Result<Vec<usize>, String> {
    let mut counts = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{THREADS_ENV}: bad thread count {s:?}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    counts.sort_unstable();
    counts.dedup();
    if counts.is_empty() {
        return Err(format!("{THREADS_ENV}: no thread counts in {list:?}"));
    }
    Ok(counts)
}

/// The thread counts from [`THREADS_ENV`], or [`DEFAULT_THREADS`].
///
/// # Panics
/// Panics if the variable is set but not a valid list.
pub fn thread_counts() -> Vec<usize> {
    match std::env::var(THREADS_ENV) {
        Ok(list) => parse_counts(&list).unwrap_or_else(|e| panic!("{e}")),
        Err(_) => DEFAULT_THREADS.to_vec(),
    }
}

/// A contender: a label and the per-thread work, `cycles` [`cycle`]s on
/// one shared allocator (monomorphised, so only the call per measurement is
/// dynamic).
pub struct Workload<'f> {
    /// Row label.
    pub label: String,
    /// True for the allocation-free control.
    pub control: bool,
    /// Alloc+free pairs per cycle.
    pub ops_per_cycle: u64,
    run: Box<dyn Fn(usize, u64) + Sync + 'f>,
}

impl<'f> Workload<'f> {
    /// Cycles of [`cycle`] on `a`, shared by every thread.
    pub fn new<A: ObjectAlloc + ?Sized>(label: impl Into<String>, a: &'f A) -> Self {
        Self {
            label: label.into(),
            control: false,
            ops_per_cycle: OPS_PER_CYCLE,
            run: Box::new(move |_, cycles| {
                for _ in 0..cycles {
                    cycle(a);
                }
            }),
        }
    }

    /// A workload of its own: `run(worker, cycles)` runs `cycles` cycles of
    /// `ops_per_cycle` alloc+free pairs each on worker thread `worker`
    /// (`0..` the largest thread count; calibration runs as worker 0 on
    /// the calling thread), so it can keep per-thread state.
    pub fn custom(
        label: impl Into<String>,
        ops_per_cycle: u64,
        run: impl Fn(usize, u64) + Sync + 'f,
    ) -> Self {
        Self {
            label: label.into(),
            control: false,
            ops_per_cycle,
            run: Box::new(run),
        }
    }

    /// The control: per cycle, [`OPS_PER_CYCLE`] steps of a dependent
    /// multiply-add chain on a value kept on the thread's stack (through
    /// `black_box`, so the chain cannot be folded). It touches no shared
    /// memory, so its speedup is the parallelism the machine offered.
    pub fn control(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            control: true,
            ops_per_cycle: OPS_PER_CYCLE,
            run: Box::new(|_, cycles| {
                let mut x = black_box(1u64);
                for _ in 0..cycles * OPS_PER_CYCLE {
                    x = black_box(x)
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                }
                black_box(x);
            }),
        }
    }

    /// Runs `cycles` cycles on the calling thread, as worker 0.
    pub fn run(&self, cycles: u64) {
        (self.run)(0, cycles);
    }
}

/// How long and how often to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Rounds kept (one more, the first, is run and discarded as warm-up).
    pub rounds: usize,
    /// Time one thread's share should take, calibrated single-threaded per
    /// contender: every thread count runs the same cycles per thread.
    pub target: Duration,
}

/// The measurements of [`run`].
pub struct Scaling {
    /// Contender labels, in the order given.
    pub labels: Vec<String>,
    /// Which contender is the allocation-free control, if any.
    pub control: Option<usize>,
    /// Thread counts, ascending.
    pub counts: Vec<usize>,
    /// Cycles per thread per measurement, per contender.
    pub cycles: Vec<u64>,
    /// Alloc+free pairs per cycle, per contender.
    pub ops_per_cycle: Vec<u64>,
    /// `wall[w][t][r]`: seconds for contender `w` at `counts[t]` threads in
    /// round `r`.
    pub wall: Vec<Vec<Vec<f64>>>,
    /// Median, over the kept measurements with more than one thread, of the
    /// time between the first and the last participant's start (seconds).
    pub start_skew: f64,
}

/// Measures every contender at every thread count in `counts` (ascending,
/// non-empty), interleaved, as described in the [module docs](self).
///
/// # Panics
/// Panics if `workloads` or `counts` is empty, or a worker panics.
pub fn run(workloads: &[Workload<'_>], counts: &[usize], plan: Plan) -> Scaling {
    assert!(
        !workloads.is_empty() && !counts.is_empty(),
        "nothing to measure"
    );
    let cycles: Vec<u64> = workloads
        .iter()
        .map(|w| calibrate(w, plan.target))
        .collect();
    let workers = *counts.iter().max().expect("non-empty");
    let configs: Vec<(usize, usize)> = (0..counts.len())
        .flat_map(|t| (0..workloads.len()).map(move |w| (w, t)))
        .collect();
    let schedule: Vec<(usize, usize)> = (0..=plan.rounds)
        .flat_map(|r| {
            let mut order = configs.clone();
            if r % 2 == 1 {
                order.reverse();
            }
            order
        })
        .collect();
    let barrier = Barrier::new(workers);
    // Participants that have reached the spinning gate, over the whole run.
    let gate = AtomicUsize::new(0);
    let spans: Vec<Vec<Option<(Instant, Instant)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|i| {
                let (barrier, gate, schedule, cycles) = (&barrier, &gate, &schedule, &cycles);
                s.spawn(move || {
                    let mut passed = 0;
                    schedule
                        .iter()
                        .map(|&(w, t)| {
                            barrier.wait();
                            passed += counts[t];
                            (i < counts[t]).then(|| {
                                gate.fetch_add(1, Ordering::AcqRel);
                                while gate.load(Ordering::Acquire) < passed {
                                    spin_loop();
                                }
                                let start = Instant::now();
                                (workloads[w].run)(i, cycles[w]);
                                (start, Instant::now())
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench worker panicked"))
            .collect()
    });
    let mut wall = vec![vec![Vec::with_capacity(plan.rounds); counts.len()]; workloads.len()];
    let mut skews = Vec::new();
    for (k, &(w, t)) in schedule.iter().enumerate().skip(configs.len()) {
        let taken = spans.iter().filter_map(|s| s[k]);
        let first = taken.clone().map(|(a, _)| a).min().expect("a participant");
        let last = taken.clone().map(|(a, _)| a).max().expect("a participant");
        let end = taken.map(|(_, b)| b).max().expect("a participant");
        wall[w][t].push((end - first).as_secs_f64());
        if counts[t] > 1 {
            skews.push((last - first).as_secs_f64());
        }
    }
    Scaling {
        labels: workloads.iter().map(|w| w.label.clone()).collect(),
        control: workloads.iter().position(|w| w.control),
        counts: counts.to_vec(),
        cycles,
        ops_per_cycle: workloads.iter().map(|w| w.ops_per_cycle).collect(),
        wall,
        start_skew: if skews.is_empty() {
            0.0
        } else {
            median(&skews)
        },
    }
}

/// Cycles per thread so that one thread's share lasts about `target` (this
/// also warms the contender up on the calling thread).
fn calibrate(w: &Workload<'_>, target: Duration) -> u64 {
    let mut n = 1u64;
    loop {
        let start = Instant::now();
        w.run(n);
        let d = start.elapsed();
        if d >= target / 4 || n >= 1 << 40 {
            let scaled = n as f64 * target.as_secs_f64() / d.as_secs_f64().max(1e-9);
            return (scaled as u64).max(1);
        }
        n *= 2;
    }
}

impl Scaling {
    /// Alloc+free pairs per second (all threads together) of contender `w`
    /// at thread-count index `t`, per round.
    pub fn ops_per_s(&self, w: usize, t: usize) -> Vec<f64> {
        let ops = self.counts[t] as f64 * (self.cycles[w] * self.ops_per_cycle[w]) as f64;
        self.wall[w][t].iter().map(|s| ops / s).collect()
    }

    /// Median over rounds of the throughput of (`w`, `t`) divided by that of
    /// (`base_w`, `base_t`) in the same round.
    pub fn median_ratio(&self, (w, t): (usize, usize), (base_w, base_t): (usize, usize)) -> f64 {
        let ratios: Vec<f64> = self
            .ops_per_s(w, t)
            .iter()
            .zip(self.ops_per_s(base_w, base_t))
            .map(|(a, b)| a / b)
            .collect();
        median(&ratios)
    }

    /// Median over rounds of contender `w`'s speedup at thread-count index
    /// `t` over the smallest count, divided by the control's speedup in the
    /// same round (1.0: it scales as well as the machine allowed).
    pub fn relative_speedup(&self, w: usize, t: usize, control: usize) -> f64 {
        let speedup = |w: usize| -> Vec<f64> {
            self.ops_per_s(w, t)
                .iter()
                .zip(self.ops_per_s(w, 0))
                .map(|(a, b)| a / b)
                .collect()
        };
        let ratios: Vec<f64> = speedup(w)
            .iter()
            .zip(speedup(control))
            .map(|(a, c)| a / c)
            .collect();
        median(&ratios)
    }

    /// Prints a markdown table: per contender and thread count, the median
    /// throughput, ns per pair per thread, the speedup over the smallest
    /// thread count and that speedup relative to the control's (median
    /// per-round ratios), and the throughput relative to contender `base`
    /// at the same thread count. The control's throughput counts its steps.
    pub fn print(&self, title: &str, base: usize) {
        let rounds = self.wall[0][0].len();
        let t0 = self.counts[0];
        println!(
            "\n{title} (interleaved, {rounds} rounds, medians; start skew {:.1} us)",
            self.start_skew * 1e6
        );
        println!(
            "| contender | threads | Mpairs/s | ns/pair per thread | speedup vs {t0} thread(s) | speedup / control's | throughput / {} |",
            self.labels[base]
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        let dash = || "-".to_string();
        for (w, label) in self.labels.iter().enumerate() {
            let is_control = self.control == Some(w);
            for (t, &n) in self.counts.iter().enumerate() {
                let tput = median(&self.ops_per_s(w, t));
                let rel = match self.control {
                    Some(c) if !is_control => format!("{:.2}", self.relative_speedup(w, t, c)),
                    _ => dash(),
                };
                let vs_base = if is_control {
                    dash()
                } else {
                    format!("{:.2}", self.median_ratio((w, t), (base, t)))
                };
                println!(
                    "| {label} | {n} | {:.1} | {:.2} | {:.2} | {rel} | {vs_base} |",
                    tput / 1e6,
                    n as f64 * 1e9 / tput,
                    self.median_ratio((w, t), (w, 0)),
                );
            }
        }
    }

    /// Total alloc+free pairs contender `w` ran in the kept rounds.
    pub fn total_ops(&self, w: usize) -> u64 {
        let rounds = self.wall[w][0].len() as u64;
        let threads: u64 = self.counts.iter().map(|&n| n as u64).sum();
        rounds * threads * self.cycles[w] * self.ops_per_cycle[w]
    }
}

#[cfg(test)]
mod tests {
    use core::sync::atomic::{AtomicUsize, Ordering};
    use core::time::Duration;

    use super::{parse_counts, run, Plan, Workload, OPS_PER_CYCLE};
    use crate::object::ObjectAlloc;

    /// Counts allocations; objects are fake.
    struct Counter(AtomicUsize);

    impl ObjectAlloc for Counter {
        fn alloc(&self) -> usize {
            self.0.fetch_add(1, Ordering::Relaxed) + 8
        }
        unsafe fn free(&self, _obj: usize) {}
    }

    #[test]
    fn counts_parse() {
        assert_eq!(parse_counts("2,1").unwrap(), [1, 2]);
        assert_eq!(parse_counts(" 1, 2,4,8,16 ,16").unwrap(), [1, 2, 4, 8, 16]);
        assert!(parse_counts("1,0").is_err());
        assert!(parse_counts("x").is_err());
        assert!(parse_counts(",").is_err());
    }

    #[test]
    fn every_config_runs_every_round() {
        let (a, b) = (Counter(AtomicUsize::new(0)), Counter(AtomicUsize::new(0)));
        let loads = [
            Workload::new("a", &a),
            Workload::new("b", &b),
            Workload::control("c"),
        ];
        let plan = Plan {
            rounds: 3,
            target: Duration::from_micros(200),
        };
        let s = run(&loads, &[1, 3], plan);
        drop(loads);
        assert_eq!(s.labels, ["a", "b", "c"]);
        assert_eq!(s.control, Some(2));
        assert!(s
            .wall
            .iter()
            .all(|w| w.len() == 2 && w.iter().all(|r| r.len() == 3 && r.iter().all(|&x| x > 0.0))));
        assert!(s.relative_speedup(0, 1, 2) > 0.0);
        // Calibration plus the warm-up round and 3 kept rounds at 1 + 3 threads.
        let timed = 4 * 4 * s.cycles[0] * OPS_PER_CYCLE;
        assert!(a.0.load(Ordering::Relaxed) as u64 > timed);
        assert_eq!(s.total_ops(1), 3 * 4 * s.cycles[1] * OPS_PER_CYCLE);
        assert!(s.median_ratio((0, 1), (0, 0)) > 0.0);
    }
}
