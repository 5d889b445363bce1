//! Ratios taken inside one process run, contenders interleaved round by
//! round (A B C, then C B A, ...), as the project's fairness rules ask: a
//! shared VM's frequency drifts, and interleaving cancels the drift out of
//! the per-round ratios. Criterion runs each benchmark in one block, so its
//! medians are reported alongside these, not instead of them.

use core::time::Duration;
use std::time::Instant;

/// A contender: a label and a closure that runs `n` operations and returns
/// how long they took (criterion's `iter_custom` shape).
pub struct Contender<'f> {
    /// Row label.
    pub label: String,
    /// Runs `n` operations, returns their duration.
    pub run: Box<dyn FnMut(u64) -> Duration + 'f>,
}

impl<'f> Contender<'f> {
    /// A contender whose operation is `op`, timed in batches.
    pub fn new(label: impl Into<String>, mut op: impl FnMut() + 'f) -> Self {
        Self {
            label: label.into(),
            run: Box::new(move |n| {
                let start = Instant::now();
                for _ in 0..n {
                    op();
                }
                start.elapsed()
            }),
        }
    }
}

/// Nanoseconds per operation of each contender in each round.
pub struct Rounds {
    /// Contender labels, in the order given.
    pub labels: Vec<String>,
    /// `ns[c][r]`: contender `c`, round `r`.
    pub ns: Vec<Vec<f64>>,
}

/// Runs `rounds` interleaved rounds over `contenders`, each batch lasting
/// about `batch` (calibrated per contender first; the calibration also warms
/// each contender up). Odd rounds run the contenders in reverse order.
pub fn run(contenders: &mut [Contender<'_>], rounds: usize, batch: Duration) -> Rounds {
    let sizes: Vec<u64> = contenders.iter_mut().map(|c| calibrate(c, batch)).collect();
    let mut ns = vec![Vec::with_capacity(rounds); contenders.len()];
    for r in 0..rounds {
        let order: Vec<usize> = if r % 2 == 0 {
            (0..contenders.len()).collect()
        } else {
            (0..contenders.len()).rev().collect()
        };
        for c in order {
            let d = (contenders[c].run)(sizes[c]);
            ns[c].push(d.as_nanos() as f64 / sizes[c] as f64);
        }
    }
    Rounds {
        labels: contenders.iter().map(|c| c.label.clone()).collect(),
        ns,
    }
}

/// Operations per batch so that one batch lasts about `batch`.
fn calibrate(c: &mut Contender<'_>, batch: Duration) -> u64 {
    let mut n = 1u64;
    loop {
        let d = (c.run)(n);
        if d >= batch / 4 || n >= 1 << 40 {
            let scaled = n as f64 * batch.as_secs_f64() / d.as_secs_f64().max(1e-9);
            return (scaled as u64).max(1);
        }
        n *= 2;
    }
}

pub use crate::stats::median;

impl Rounds {
    /// Median ns/op of contender `c`.
    pub fn median_ns(&self, c: usize) -> f64 {
        median(&self.ns[c])
    }

    /// Median over rounds of `ns[num] / ns[den]`.
    pub fn median_ratio(&self, num: usize, den: usize) -> f64 {
        let ratios: Vec<f64> = self.ns[num]
            .iter()
            .zip(&self.ns[den])
            .map(|(a, b)| a / b)
            .collect();
        median(&ratios)
    }

    /// Median over rounds of (slowest / fastest contender in that round).
    pub fn median_spread(&self) -> f64 {
        let rounds = self.ns.first().map_or(0, Vec::len);
        let spreads: Vec<f64> = (0..rounds)
            .map(|r| {
                let row = self.ns.iter().map(|c| c[r]);
                let max = row.clone().fold(f64::MIN, f64::max);
                let min = row.fold(f64::MAX, f64::min);
                max / min
            })
            .collect();
        median(&spreads)
    }

    /// Prints a markdown table: each contender's median ns/op and its
    /// median per-round ratio to contender `base`.
    pub fn print(&self, title: &str, base: usize) {
        println!(
            "\n{title} (interleaved, {} rounds, medians)",
            self.ns[0].len()
        );
        println!("| contender | ns/op | ratio to {} |", self.labels[base]);
        println!("|---|---:|---:|");
        for (c, label) in self.labels.iter().enumerate() {
            println!(
                "| {label} | {:.1} | {:.2} |",
                self.median_ns(c),
                self.median_ratio(c, base)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{run, Contender};
    use core::time::Duration;

    #[test]
    fn rounds_cover_every_contender() {
        let (mut a, mut b) = (0u64, 0u64);
        let mut cs = [
            Contender::new("a", || a += 1),
            Contender::new("b", || {
                for _ in 0..8 {
                    b = core::hint::black_box(b + 1);
                }
            }),
        ];
        let r = run(&mut cs, 5, Duration::from_micros(200));
        drop(cs);
        assert_eq!(r.labels, ["a", "b"]);
        assert!(r
            .ns
            .iter()
            .all(|c| c.len() == 5 && c.iter().all(|&x| x > 0.0)));
        assert!(r.median_spread() >= 1.0);
        assert_eq!(r.median_ratio(0, 0), 1.0);
        assert!(a > 0 && b > 0);
    }
}
