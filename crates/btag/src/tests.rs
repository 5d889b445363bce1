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
        unsafe {
            tags.donate(
                mem.as_mut_ptr().cast(),
                pages * CHUNK_BYTES,
                crate::Donation::Kept,
            )
        };
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
    let n = unsafe { tags.donate(mem.0.as_mut_ptr(), CHUNK_BYTES - 1, crate::Donation::Kept) };
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
        unsafe {
            tags.donate(
                (base + i * CHUNK_BYTES) as *mut u8,
                CHUNK_BYTES,
                if i == 1 {
                    crate::Donation::Kept
                } else {
                    crate::Donation::Owned
                },
            )
        };
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
    f.tags.insert(Tree::Segments, other);
    f.tags.insert(Tree::Segments, seg);
    f.tags.insert(Tree::Segments, span);
    let order: Vec<_> = f.tags.iter(Tree::Segments).collect();
    assert_eq!(order, [span, seg, other]);
    assert_eq!(f.tags.lower_bound(Tree::Segments, 100), Some(span));
    assert_eq!(f.tags.lower_bound(Tree::Segments, 101), Some(other));
    assert_eq!(f.tags.floor(Tree::Segments, 105), Some(seg));
    assert_eq!(f.tags.floor(Tree::Segments, 99), None);
    assert_eq!(f.tags.prev(seg), Some(span));
    assert_eq!(f.tags.last(Tree::Segments), Some(other));
    f.tags.verify_tree(Tree::Segments).unwrap();
}

#[test]
#[should_panic(expected = "already in the tree")]
fn duplicate_key_panics() {
    let mut f = Fixture::new(2);
    let a = f.tags.take(5, 1, TagKind::Free).unwrap();
    let b = f.tags.take(5, 1, TagKind::Allocated).unwrap();
    f.tags.insert(Tree::Segments, a);
    f.tags.insert(Tree::Segments, b);
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
            f.tags.insert(Tree::Segments, id);
            model.insert(key, id);
        }
        if step % 97 == 0 || model.len() < 8 {
            f.tags.verify_tree(Tree::Segments).unwrap();
            let walk: Vec<_> = f.tags.iter(Tree::Segments).collect();
            let want: Vec<_> = model.values().copied().collect();
            assert_eq!(walk, want);
        }
        let probe = rng.below(8192 * 8 + 16) as usize;
        let lb = model.range(probe..).next().map(|(_, &id)| id);
        assert_eq!(f.tags.lower_bound(Tree::Segments, probe), lb);
        let fl = model.range(..=probe).next_back().map(|(_, &id)| id);
        assert_eq!(f.tags.floor(Tree::Segments, probe), fl);
        if let Some((&k, &id)) = model.range(probe..).next() {
            let next = model.range(k + 1..).next().map(|(_, &v)| v);
            let prev = model.range(..k).next_back().map(|(_, &v)| v);
            assert_eq!(f.tags.next(id), next);
            assert_eq!(f.tags.prev(id), prev);
        }
    }
    f.tags.verify_tree(Tree::Segments).unwrap();
    assert_eq!(f.tags.tree_len(Tree::Segments), model.len());
    assert_eq!(f.tags.unused() + model.len(), f.tags.capacity());
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
    f.tags.insert(Tree::Segments, first);
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
            f.tags.verify_tree(Tree::Segments).unwrap();
            let walk: Vec<_> = f.tags.iter(Tree::Segments).collect();
            let want: Vec<_> = model.values().copied().collect();
            assert_eq!(walk, want);
        }
    }
    f.tags.verify_tree(Tree::Segments).unwrap();
    let walk: Vec<_> = f.tags.iter(Tree::Segments).collect();
    assert_eq!(walk, model.values().copied().collect::<Vec<_>>());
}

/// The address list against a Vec model: random inserts before and after
/// random members, pushes at the back and removals.
#[test]
fn address_list_matches_model() {
    let mut f = Fixture::new(3);
    let mut model: Vec<TagId> = Vec::new();
    let mut rng = Rng(99);
    for step in 0..20_000 * crate_scale() {
        let op = rng.below(4);
        if op == 0 && !model.is_empty() {
            let i = rng.below(model.len() as u64) as usize;
            let id = model.remove(i);
            f.tags.addr_remove(id);
            f.tags.put(id);
        } else if let Some(id) = f.tags.take(0, 1, TagKind::Free) {
            if model.is_empty() || op == 1 {
                f.tags.addr_push_back(id);
                model.push(id);
            } else {
                let i = rng.below(model.len() as u64) as usize;
                if op == 2 {
                    f.tags.addr_insert_after(model[i], id);
                    model.insert(i + 1, id);
                } else {
                    f.tags.addr_insert_before(model[i], id);
                    model.insert(i, id);
                }
            }
        }
        if step % 64 == 0 {
            let walk: Vec<_> = f.tags.addr_iter().collect();
            assert_eq!(walk, model);
            assert_eq!(f.tags.addr_first(), model.first().copied());
            assert_eq!(f.tags.addr_last(), model.last().copied());
        }
    }
    // Starts are all 0 here, so only the links and the count are checked
    // by walking; order is checked below on distinct starts.
    assert_eq!(f.tags.len(), model.len());
    for id in model.drain(..) {
        f.tags.addr_remove(id);
        f.tags.put(id);
    }
    assert_eq!(f.tags.verify_addr(), Ok(0));
    let a = f.tags.take(1, 1, TagKind::Free).unwrap();
    let b = f.tags.take(2, 1, TagKind::Free).unwrap();
    f.tags.addr_push_back(b);
    f.tags.addr_insert_before(b, a);
    assert_eq!(f.tags.verify_addr(), Ok(2));
    f.tags.addr_remove(a);
    f.tags.addr_insert_after(b, a);
    assert!(matches!(f.tags.verify_addr(), Err(AddrError::Order(_))));
}

#[test]
fn two_trees_are_independent() {
    let mut f = Fixture::new(2);
    let span = f.tags.take(0, 100, TagKind::Span).unwrap();
    let seg = f.tags.take(10, 5, TagKind::Free).unwrap();
    f.tags.insert(Tree::Spans, span);
    f.tags.insert(Tree::Segments, seg);
    assert_eq!(f.tags.tree_of(span), Some(Tree::Spans));
    assert_eq!(f.tags.floor(Tree::Spans, 50), Some(span));
    assert_eq!(f.tags.floor(Tree::Segments, 50), Some(seg));
    assert_eq!(f.tags.next(span), None);
    f.tags.remove(span);
    assert_eq!(f.tags.tree_of(span), None);
    assert_eq!(f.tags.first(Tree::Spans), None);
    assert_eq!(f.tags.first(Tree::Segments), Some(seg));
    f.tags.verify_tree(Tree::Spans).unwrap();
    f.tags.verify_tree(Tree::Segments).unwrap();
}

/// `carve_front`, `merge_into`, `merge_into_next` and `merge_into_prev`
/// against a model of ranges tiling `[0, 1 << 20)`: random splits and
/// merges keep the address list in order, the ranges tiling, the count and
/// the unused tags right.
#[test]
fn split_and_merge_match_model() {
    let mut f = Fixture::new(4);
    let whole = f.tags.take(0, 1 << 20, TagKind::Free).unwrap();
    f.tags.addr_push_back(whole);
    let mut model: Vec<(TagId, usize, usize)> = Vec::from([(whole, 0, 1 << 20)]);
    let mut rng = Rng(7);
    for step in 0..20_000 * crate_scale() {
        let i = rng.below(model.len() as u64) as usize;
        let (id, start, size) = model[i];
        if rng.below(2) == 0 && size > 1 && f.tags.unused() > 0 {
            let cut = 1 + rng.below(size as u64 - 1) as usize;
            let front = f.tags.carve_front(id, cut, TagKind::Allocated).unwrap();
            assert_eq!(f.tags.get(front).kind(), TagKind::Allocated);
            model[i] = (id, start + cut, size - cut);
            model.insert(i, (front, start, cut));
        } else if model.len() > 1 {
            let unused = f.tags.unused();
            if i + 1 < model.len() {
                let (next, _, nsize) = model[i + 1];
                let (got, t) = match rng.below(2) {
                    0 => f.tags.merge_into_next(id),
                    _ => f.tags.merge_into(id, next),
                };
                assert_eq!((got, t.start, t.size), (next, start, size + nsize));
                model[i + 1] = (next, start, size + nsize);
            } else {
                let (prev, pstart, psize) = model[i - 1];
                let (got, t) = f.tags.merge_into_prev(id);
                assert_eq!((got, t.start, t.size), (prev, pstart, psize + size));
                model[i - 1] = (prev, pstart, psize + size);
            }
            model.remove(i);
            assert_eq!(f.tags.get(id).kind(), TagKind::Unused);
            assert_eq!(f.tags.unused(), unused + 1);
        }
        if step % 64 == 0 {
            let walk: Vec<_> = f
                .tags
                .addr_iter()
                .map(|id| (id, f.tags.get(id).start, f.tags.get(id).size))
                .collect();
            assert_eq!(walk, model);
            assert_eq!(f.tags.verify_addr(), Ok(model.len()));
            assert_eq!(
                f.tags.verify_unused(),
                Some(f.tags.capacity() - model.len())
            );
        }
    }
}

#[test]
#[should_panic(expected = "carve_front of a whole tag")]
fn carve_of_a_whole_tag_panics() {
    let mut f = Fixture::new(2);
    let id = f.tags.take(0, 4, TagKind::Free).unwrap();
    f.tags.addr_push_back(id);
    let _ = f.tags.carve_front(id, 4, TagKind::Allocated);
}

#[test]
#[should_panic(expected = "one tag twice")]
fn merge_into_itself_panics() {
    let mut f = Fixture::new(2);
    let id = f.tags.take(0, 4, TagKind::Free).unwrap();
    f.tags.addr_push_back(id);
    let _ = f.tags.merge_into(id, id);
}

/// Ids are chunk and byte offset: the second chunk's first id is 4096, and
/// every id of a store is accepted by it.
#[test]
fn ids_name_chunk_and_slot() {
    let mut f = Fixture::new(3);
    let ids: Vec<TagId> = core::iter::from_fn(|| f.tags.take(0, 1, TagKind::Free)).collect();
    assert_eq!(ids.len(), 2 * TAGS_PER_CHUNK);
    assert_eq!(ids[1].index(), core::mem::size_of::<Tag>());
    assert_eq!(ids[TAGS_PER_CHUNK].index(), CHUNK_BYTES);
    for &id in &ids {
        assert_eq!(f.tags.get(id).kind(), TagKind::Free);
    }
}

/// `carve_front_onto` pushes the new tag on the list it is given, in front
/// of what the list held, as `list_push` would.
#[test]
fn carve_onto_pushes_on_the_list() {
    let mut f = Fixture::new(2);
    let whole = f.tags.take(0, 100, TagKind::Free).unwrap();
    f.tags.addr_push_back(whole);
    let mut head = ListHead::new();
    let a = f
        .tags
        .carve_front_onto(whole, 10, TagKind::Allocated, &mut head)
        .unwrap();
    let b = f
        .tags
        .carve_front_onto(whole, 20, TagKind::Allocated, &mut head)
        .unwrap();
    let on_list: Vec<_> = f.tags.list_iter(head).collect();
    assert_eq!(on_list, [b, a]);
    assert_eq!((f.tags.get(b).start, f.tags.get(b).size), (10, 20));
    let walk: Vec<_> = f.tags.addr_iter().collect();
    assert_eq!(walk, [a, b, whole]);
    f.tags.list_remove(&mut head, b);
    assert_eq!(f.tags.list_iter(head).collect::<Vec<_>>(), [a]);
    assert_eq!(f.tags.verify_addr(), Ok(3));
}

/// The keyed searches against a brute-force walk, with keys changed by
/// `set_kind` and `refresh_key` and members inserted and removed at
/// random: `maxkey` stays exact (`verify_tree`) and each search finds what
/// the walk finds.
#[test]
fn keyed_searches_match_brute_force() {
    let mut f = Fixture::new(8);
    let mut rng = Rng(2026);
    let mut members: Vec<TagId> = Vec::new();
    let brute_first = |t: &Tags, from: usize, k: u8| {
        t.iter(Tree::Segments)
            .find(|&id| t.get(id).start >= from && t.get(id).key() >= k)
    };
    let brute_last = |t: &Tags, below: usize, k: u8| {
        t.iter(Tree::Segments)
            .filter(|&id| t.get(id).start < below && t.get(id).key() >= k)
            .last()
    };
    for step in 0..20_000 * crate_scale() {
        match rng.below(4) {
            0 if f.tags.unused() > 0 => {
                let start = rng.below(1 << 16) as usize * 2;
                if members.iter().any(|&id| f.tags.get(id).start == start) {
                    continue;
                }
                let kind = if rng.below(2) == 0 {
                    TagKind::Free
                } else {
                    TagKind::Allocated
                };
                let id = f.tags.take(start, 1, kind).unwrap();
                f.tags.get_mut(id).list = rng.below(64) as u8;
                f.tags.insert(Tree::Segments, id);
                members.push(id);
            }
            1 if !members.is_empty() => {
                let id = members.swap_remove(rng.below(members.len() as u64) as usize);
                f.tags.remove(id);
                f.tags.put(id);
            }
            2 if !members.is_empty() => {
                let id = members[rng.below(members.len() as u64) as usize];
                let kind = if rng.below(2) == 0 {
                    TagKind::Free
                } else {
                    TagKind::Allocated
                };
                f.tags.set_kind(id, kind);
            }
            _ if !members.is_empty() => {
                let id = members[rng.below(members.len() as u64) as usize];
                f.tags.get_mut(id).list = rng.below(64) as u8;
                f.tags.refresh_key(id);
            }
            _ => {}
        }
        if step % 16 == 0 {
            f.tags.verify_tree(Tree::Segments).unwrap();
            for _ in 0..4 {
                let at = rng.below(1 << 17) as usize;
                let k = rng.below(66) as u8;
                assert_eq!(
                    f.tags.first_keyed_from(Tree::Segments, at, k),
                    brute_first(&f.tags, at, k)
                );
                assert_eq!(
                    f.tags.last_keyed_below(Tree::Segments, at, k),
                    brute_last(&f.tags, at, k)
                );
            }
            if let Some(&id) = members.get(rng.below(members.len().max(1) as u64) as usize) {
                let k = rng.below(66) as u8;
                let start = f.tags.get(id).start;
                assert_eq!(f.tags.next_keyed(id, k), brute_first(&f.tags, start + 1, k));
                assert_eq!(f.tags.prev_keyed(id, k), brute_last(&f.tags, start, k));
            }
        }
    }
}

/// Tags as the nodes of a `kmem_hash::AddrHash` (the arena's hash of
/// allocated segments): the doubly linked lists serve as chains while a
/// table is installed and the entries move over, removals in the middle of
/// a chain included.
#[test]
fn tags_chain_in_an_address_hash() {
    let mut f = Fixture::new(8);
    let mut mem = std::vec![0u32; 512];
    // SAFETY: `mem` outlives the table (dropped by `take_tables` below and
    // given up), 4-aligned and used by nothing else.
    let table = unsafe { HeadTable::from_raw(mem.as_mut_ptr().cast(), 512) };
    let mut h = kmem_hash::AddrHash::<Tags, HeadTable>::new();
    let ids: Vec<TagId> = (0..300)
        .map(|i| {
            let id = f.tags.take(i * 64, 64, TagKind::Allocated).unwrap();
            h.insert(&mut f.tags, id);
            id
        })
        .collect();
    h.install(Some(table));
    for (i, &id) in ids.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        let found = h.find(&f.tags, i * 64).expect("an entry");
        assert_eq!(found.node, id);
        h.remove_found(&mut f.tags, &found);
        f.tags.put(id);
    }
    assert!(!h.moving(), "150 removals move every chain");
    assert_eq!(
        h.scan(&f.tags, f.tags.capacity(), |_, _| true).map(|s| s.0),
        Ok(150)
    );
    for (i, &id) in ids.iter().enumerate() {
        let want = (i % 2 == 0).then_some(id);
        assert_eq!(h.find(&f.tags, i * 64).map(|x| x.node), want);
    }
    let [table, retired] = h.take_tables(&mut f.tags);
    assert!(retired.is_none(), "the inline chains are not retired");
    assert_eq!(
        table.map(|t| t.into_raw().1),
        Some(HeadTable::bytes_for(512))
    );
}
