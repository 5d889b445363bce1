//! `collections`: `scale` random operations on std's collections, each
//! kept at a bounded size so the heap churns: a `BTreeMap<u64, String>`
//! (insert, remove, range scans), a `HashMap<String, Vec<u32>>` (append to
//! a key's vector, drop keys), a `Vec<String>` (push, then sort, dedup and
//! truncate when full) and a `VecDeque<Vec<u8>>` (a FIFO of byte buffers of
//! 1-1024 bytes).

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::rng::{fold, hash_bytes, mix, Rng};

/// Keys of the tree map (it holds about half of them).
const TREE_KEYS: u64 = 1 << 16;
/// Keys of the hash map.
const HASH_KEYS: u64 = 1 << 14;
/// The string vector is sorted and halved when it reaches this length.
const STRINGS: usize = 1 << 15;
/// Buffers queued in the deque.
const QUEUE: usize = 1 << 13;

pub(crate) fn run(scale: u64) -> u64 {
    let mut rng = Rng::new(0xc011);
    let mut tree: BTreeMap<u64, String> = BTreeMap::new();
    let mut hash: HashMap<String, Vec<u32>> = HashMap::new();
    let mut strings: Vec<String> = Vec::new();
    let mut queue: VecDeque<Vec<u8>> = VecDeque::new();
    let mut h = 0;
    for i in 0..scale {
        let r = rng.next_u64();
        match r % 10 {
            0..=2 => {
                let key = (r >> 8) % TREE_KEYS;
                let value = format!("{key:x}-{}", crate::rng::WORDS[(r >> 40) as usize % 64]);
                if let Some(old) = tree.insert(key, value) {
                    h = fold(h, old.len() as u64);
                }
            }
            3 => {
                let key = (r >> 8) % TREE_KEYS;
                if let Some(old) = tree.remove(&key) {
                    h = fold(h, hash_bytes(old.as_bytes()));
                }
            }
            4 => {
                let from = (r >> 8) % TREE_KEYS;
                let lens: usize = tree.range(from..from + 64).map(|(_, v)| v.len()).sum();
                h = fold(h, lens as u64);
            }
            5 | 6 => {
                let key = format!("key-{}", (r >> 8) % HASH_KEYS);
                let v = hash.entry(key).or_default();
                v.push(i as u32);
                if v.len() > 64 {
                    v.drain(..32);
                }
            }
            7 => {
                let key = format!("key-{}", (r >> 8) % HASH_KEYS);
                if let Some(v) = hash.remove(&key) {
                    h = fold(h, v.iter().map(|&x| u64::from(x)).sum());
                }
            }
            8 => {
                strings.push(rng.words(1 + r % 4, "/"));
                if strings.len() >= STRINGS {
                    strings.sort_unstable();
                    strings.dedup();
                    h = fold(h, strings.len() as u64);
                    strings.truncate(STRINGS / 2);
                }
            }
            _ => {
                let len = 1 + (r >> 8) as usize % 1024;
                queue.push_back(vec![(r >> 32) as u8; len]);
                if queue.len() > QUEUE {
                    if let Some(b) = queue.pop_front() {
                        h = fold(h, b.len() as u64 + u64::from(b[0]));
                    }
                }
            }
        }
    }
    h = tree
        .iter()
        .fold(h, |h, (k, v)| fold(h, k ^ hash_bytes(v.as_bytes())));
    // The hash map's order changes from run to run: add up its entries'
    // hashes instead.
    let map_sum = hash.iter().fold(0_u64, |a, (k, v)| {
        a.wrapping_add(mix(hash_bytes(k.as_bytes()) ^ v.len() as u64))
    });
    h = fold(h, map_sum);
    h = strings
        .iter()
        .fold(h, |h, s| fold(h, hash_bytes(s.as_bytes())));
    queue.iter().fold(h, |h, b| fold(h, b.len() as u64))
}
