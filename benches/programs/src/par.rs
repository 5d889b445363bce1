//! `rayon`: on rayon's global pool (a thread per CPU), in rounds of 10^5
//! items: strings formatted and collected in parallel, a parallel sort of
//! a clone of them, a `Vec<Vec<u32>>` of 0-63 numbers per item built and
//! summed in parallel, and a parallel fold of the strings into per-thread
//! `HashMap<u8, Vec<String>>` groups merged by `reduce`. Every item is
//! allocated on a worker thread, and most are freed on another one.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::rng::{fold, hash_bytes, mix, WORDS};

/// Items per round.
const ROUND: u64 = 100_000;

fn round(from: u64, count: u64) -> u64 {
    let strings: Vec<String> = (from..from + count)
        .into_par_iter()
        .map(|i| {
            let r = mix(i);
            format!("{}-{r:x}-{}", WORDS[r as usize % WORDS.len()], i % 97)
        })
        .collect();
    let mut sorted = strings.clone();
    sorted.par_sort();
    let mut h = sorted
        .iter()
        .step_by(97)
        .fold(0, |h, s| fold(h, hash_bytes(s.as_bytes())));
    let nested: Vec<Vec<u32>> = (from..from + count)
        .into_par_iter()
        .map(|i| (0..mix(i ^ 0xabc) % 64).map(|x| (x * i) as u32).collect())
        .collect();
    let sum: u64 = nested
        .par_iter()
        .map(|v| v.iter().map(|&x| u64::from(x)).sum::<u64>())
        .sum();
    h = fold(h, sum);
    drop(nested);
    let groups = strings
        .into_par_iter()
        .fold(HashMap::<u8, Vec<String>>::new, |mut m, s| {
            m.entry(s.as_bytes()[0]).or_default().push(s);
            m
        })
        .reduce(HashMap::new, |mut a, b| {
            for (k, mut v) in b {
                a.entry(k).or_default().append(&mut v);
            }
            a
        });
    let mut sizes: Vec<(u8, usize)> = groups.iter().map(|(k, v)| (*k, v.len())).collect();
    sizes.sort_unstable();
    sizes
        .iter()
        .fold(h, |h, &(k, n)| fold(h, u64::from(k) << 32 | n as u64))
}

pub(crate) fn run(scale: u64) -> u64 {
    let mut h = 0;
    let mut n = 0;
    while n < scale {
        let count = ROUND.min(scale - n);
        h = fold(h, round(n, count));
        n += count;
    }
    h
}
