//! Randomized tests of the tree, lists and storage against `BTreeMap` models.

extern crate std;

use std::boxed::Box;
use std::collections::BTreeMap;
use std::vec::Vec;

use super::*;

#[repr(C, align(4096))]
struct Page([u8; CHUNK_BYTES]);

/// Tags over `pages` pages of heap memory, kept alive together.
struct Fixture {
    tags: Tags,
    _mem: Box<[Page]>,
}

impl Fixture {
    fn new(pages: usize) -> Self {
        let mut mem: Box<[Page]> = (0..pages).map(|_| Page([0; CHUNK_BYTES])).collect();
        let mut tags = Tags::new();
        // SAFETY: `mem` lives in the fixture as long as `tags` and is not touched otherwise.
        unsafe { tags.donate(mem.as_mut_ptr().cast(), pages * CHUNK_BYTES, false) };
        Self { tags, _mem: mem }
    }
}

/// xorshift64*: a tiny seeded generator for reproducible tests.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn donation_carves_directory_then_chunks() {
    let f = Fixture::new(3);
    assert_eq!(f.tags.capacity(), 2 * TAGS_PER_CHUNK);
    assert_eq!(f.tags.unused(), 2 * TAGS_PER_CHUNK);
    assert_eq!(f.tags.pages(), 3);
    assert_eq!(f.tags.verify_unused(), Some(2 * TAGS_PER_CHUNK));
}

#[test]
fn too_small_donation_yields_nothing() {
    let mut mem = Box::new(Page([0; CHUNK_BYTES]));
    let mut tags = Tags::new();
    // SAFETY: `mem` outlives `tags`; the region is only CHUNK_BYTES - 1 long.
    let n = unsafe { tags.donate(mem.0.as_mut_ptr(), CHUNK_BYTES - 1, false) };
    assert_eq!(n, 0);
    assert_eq!(tags.capacity(), 0);
    assert!(tags.take(0, 1, TagKind::Free).is_none());
}

#[test]
fn take_until_exhausted_then_put_back() {
    let mut f = Fixture::new(2);
    let ids: Vec<_> = (0..TAGS_PER_CHUNK)
        .map(|i| f.tags.take(i, 1, TagKind::Free).unwrap())
        .collect();
    assert_eq!(f.tags.unused(), 0);
    assert!(f.tags.take(0, 1, TagKind::Free).is_none());
    for id in ids {
        f.tags.put(id);
    }
    assert_eq!(f.tags.verify_unused(), Some(TAGS_PER_CHUNK));
}

#[test]
fn owned_pages_are_drained_back() {
    let mut mem: Box<[Page]> = (0..3).map(|_| Page([0; CHUNK_BYTES])).collect();
    let base = mem.as_mut_ptr() as usize;
    let mut tags = Tags::new();
    for i in 0..3 {
        // SAFETY: each page is donated once, outlives `tags`, owned pages are one page.
        unsafe { tags.donate((base + i * CHUNK_BYTES) as *mut u8, CHUNK_BYTES, i != 1) };
    }
    let mut back = Vec::new();
    tags.drain_owned(|a, l| back.push((a, l)));
    back.sort();
    assert_eq!(
        back,
        [(base, CHUNK_BYTES), (base + 2 * CHUNK_BYTES, CHUNK_BYTES)]
    );
    assert_eq!(tags.capacity(), 0);
}

#[test]
#[should_panic(expected = "out of range")]
fn foreign_id_is_caught() {
    let a = Fixture::new(2);
    let mut b = Fixture::new(3);
    let mut last = None;
    while let Some(id) = b.tags.take(0, 1, TagKind::Free) {
        last = Some(id);
    }
    let _ = a.tags.get(last.unwrap());
}

#[test]
fn spans_sort_before_segments_at_same_start() {
    let mut f = Fixture::new(2);
    let seg = f.tags.take(100, 10, TagKind::Allocated).unwrap();
    let span = f.tags.take(100, 50, TagKind::Span).unwrap();
    let other = f.tags.take(110, 40, TagKind::Free).unwrap();
    f.tags.insert(other);
    f.tags.insert(seg);
    f.tags.insert(span);
    let order: Vec<_> = f.tags.iter().collect();
    assert_eq!(order, [span, seg, other]);
    assert_eq!(f.tags.lower_bound(100), Some(span));
    assert_eq!(f.tags.lower_bound(101), Some(other));
    assert_eq!(f.tags.floor(105), Some(seg));
    assert_eq!(f.tags.floor(99), None);
    assert_eq!(f.tags.prev(seg), Some(span));
    assert_eq!(f.tags.last(), Some(other));
    f.tags.verify_tree().unwrap();
}

#[test]
#[should_panic(expected = "already in the tree")]
fn duplicate_key_panics() {
    let mut f = Fixture::new(2);
    let a = f.tags.take(5, 1, TagKind::Free).unwrap();
    let b = f.tags.take(5, 1, TagKind::Allocated).unwrap();
    f.tags.insert(a);
    f.tags.insert(b);
}

/// Random inserts and removals, compared with a BTreeMap after every step:
/// in-order walk, neighbours, lower_bound/floor, and the red-black rules.
#[test]
fn tree_matches_btreemap_model() {
    let ops = 20_000 * crate_scale();
    let mut f = Fixture::new(1 + 4096 / TAGS_PER_CHUNK + 1);
    let mut model: BTreeMap<usize, TagId> = BTreeMap::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for step in 0..ops {
        let key = rng.below(8192) as usize * 8;
        if let Some(&id) = model.get(&key) {
            f.tags.remove(id);
            f.tags.put(id);
            model.remove(&key);
        } else if let Some(id) = f.tags.take(key, 8, TagKind::Free) {
            f.tags.insert(id);
            model.insert(key, id);
        }
        if step % 97 == 0 || model.len() < 8 {
            f.tags.verify_tree().unwrap();
            let walk: Vec<_> = f.tags.iter().collect();
            let want: Vec<_> = model.values().copied().collect();
            assert_eq!(walk, want);
        }
        let probe = rng.below(8192 * 8 + 16) as usize;
        let lb = model.range(probe..).next().map(|(_, &id)| id);
        assert_eq!(f.tags.lower_bound(probe), lb);
        let fl = model.range(..=probe).next_back().map(|(_, &id)| id);
        assert_eq!(f.tags.floor(probe), fl);
        if let Some((&k, &id)) = model.range(probe..).next() {
            let next = model.range(k + 1..).next().map(|(_, &v)| v);
            let prev = model.range(..k).next_back().map(|(_, &v)| v);
            assert_eq!(f.tags.next(id), next);
            assert_eq!(f.tags.prev(id), prev);
        }
    }
    f.tags.verify_tree().unwrap();
    assert_eq!(f.tags.len(), model.len());
    assert_eq!(f.tags.unused() + f.tags.len(), f.tags.capacity());
}

/// Lists: random pushes and removals against a model of per-list vectors.
#[test]
fn lists_match_model() {
    let mut f = Fixture::new(3);
    let mut heads = [ListHead::new(); 4];
    let mut model: [Vec<TagId>; 4] = Default::default();
    let mut rng = Rng(42);
    for _ in 0..20_000 * crate_scale() {
        let l = rng.below(4) as usize;
        if !model[l].is_empty() && rng.below(2) == 0 {
            let i = rng.below(model[l].len() as u64) as usize;
            let id = model[l].remove(i);
            f.tags.list_remove(&mut heads[l], id);
            f.tags.put(id);
        } else if let Some(id) = f.tags.take(0, 0, TagKind::Free) {
            f.tags.list_push(&mut heads[l], id);
            model[l].insert(0, id);
        }
        let got: Vec<_> = f.tags.list_iter(heads[l]).collect();
        assert_eq!(got, model[l]);
    }
    for l in 0..4 {
        while let Some(id) = f.tags.list_pop(&mut heads[l]) {
            assert_eq!(id, model[l].remove(0));
            f.tags.put(id);
        }
    }
    assert_eq!(f.tags.verify_unused(), Some(f.tags.capacity()));
}

#[test]
fn head_table_round_trip() {
    let mut mem = Box::new(Page([0xff; CHUNK_BYTES]));
    let ptr = mem.0.as_mut_ptr();
    // SAFETY: the page outlives the table and is aligned.
    let mut table = unsafe { HeadTable::from_raw(ptr, 64) };
    assert!(table.as_slice().iter().all(|h| h.is_empty()));
    let mut f = Fixture::new(2);
    let id = f.tags.take(1, 1, TagKind::Allocated).unwrap();
    f.tags.list_push(&mut table.as_mut_slice()[7], id);
    assert_eq!(table.as_slice()[7].first(), Some(id));
    assert_eq!(table.into_raw(), (ptr as usize, 256));
}

/// Scale factor for randomized test lengths (`KMEM_TEST_SCALE`, default 1).
fn crate_scale() -> usize {
    std::env::var("KMEM_TEST_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Splits like the arena's: random tags get a neighbour inserted right after
/// or right before them without a search; the tree must stay valid and
/// ordered, and match the model.
#[test]
fn insert_beside_matches_model() {
    let mut f = Fixture::new(1 + 4096 / TAGS_PER_CHUNK + 1);
    let mut model: BTreeMap<usize, TagId> = BTreeMap::new();
    let mut rng = Rng(7);
    let first = f.tags.take(1 << 30, 8, TagKind::Free).unwrap();
    f.tags.insert(first);
    model.insert(1 << 30, first);
    for step in 0..5_000 * crate_scale() {
        let keys: Vec<usize> = model.keys().copied().collect();
        let k = keys[rng.below(keys.len() as u64) as usize];
        let at = model[&k];
        let after = rng.below(2) == 0;
        let bound = if after {
            model
                .range(k + 1..)
                .next()
                .map_or(k + (1 << 20), |(&n, _)| n)
        } else {
            model
                .range(..k)
                .next_back()
                .map_or(k - (1 << 20), |(&p, _)| p)
        };
        let gap = bound.abs_diff(k);
        if gap < 2 {
            if model.len() > 2 {
                f.tags.remove(at);
                f.tags.put(at);
                model.remove(&k);
            }
            continue;
        }
        let off = 1 + rng.below(gap as u64 - 1) as usize;
        let key = if after { k + off } else { k - off };
        let Some(id) = f.tags.take(key, 1, TagKind::Free) else {
            break;
        };
        if after {
            f.tags.insert_after(at, id);
        } else {
            f.tags.insert_before(at, id);
        }
        model.insert(key, id);
        if step % 50 == 0 {
            f.tags.verify_tree().unwrap();
            let walk: Vec<_> = f.tags.iter().collect();
            let want: Vec<_> = model.values().copied().collect();
            assert_eq!(walk, want);
        }
    }
    f.tags.verify_tree().unwrap();
    let walk: Vec<_> = f.tags.iter().collect();
    assert_eq!(walk, model.values().copied().collect::<Vec<_>>());
}
