//! `alloc`'s collections through the global allocator: `Vec` (grown to
//! 100 000 elements, then shrunk), `String` and `format!`, `BTreeMap`
//! (thousands of inserts and removes), `Box` (small, large, trait objects),
//! `VecDeque`, `BinaryHeap`, `LinkedList`, `Rc` and `Arc`. Contents are
//! verified, buffers must lie in the booted region, and when everything is
//! dropped no class object or page run may be left allocated.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BinaryHeap, LinkedList, VecDeque};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use alloc::{format, vec};
use core::fmt::Write as _;
use core::ops::Range;

use crate::check::{ensure, fail};
use crate::rt::outln;
use crate::stack::{class_objects, in_ram, K};

/// A bijective scramble of `i` (splitmix64's finaliser), so values depend
/// on their position and a misplaced element is caught.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Runs every collection check, then checks that all was given back.
pub(crate) fn run(k: &K, ram: &Range<usize>) {
    let live0 = class_objects(k);
    let (allocs0, frees0, _) = k.large_counts();
    vec(ram);
    string(ram);
    btree();
    boxes(ram);
    queues();
    shared();
    let (allocs, frees, _) = k.large_counts();
    ensure!(
        class_objects(k) == live0 && allocs - allocs0 == frees - frees0,
        "collections: {} class objects and {} page runs left after dropping everything",
        class_objects(k) - live0,
        (allocs - allocs0) - (frees - frees0)
    );
    ensure!(
        allocs > allocs0,
        "collections: no large allocation went to the page arena"
    );
    outln!(
        "  collections: {} page runs allocated and freed, no object left",
        allocs - allocs0
    );
}

/// `Vec<u64>` grown one push at a time to 100 000 elements (realloc moves
/// it through the classes and into page runs), then truncated and shrunk.
fn vec(ram: &Range<usize>) {
    const N: usize = 100_000;
    let mut v: Vec<u64> = Vec::new();
    let mut moves = 0;
    let mut last = v.as_ptr();
    for i in 0..N as u64 {
        v.push(mix(i));
        if v.as_ptr() != last {
            moves += 1;
            last = v.as_ptr();
        }
    }
    ensure!(
        in_ram(ram, v.as_ptr() as usize, v.capacity() * 8),
        "Vec: buffer {:p} (+{:#x}) outside the booted region",
        v.as_ptr(),
        v.capacity() * 8
    );
    ensure!(v.len() == N, "Vec: {} elements, expected {N}", v.len());
    if let Some(i) = (0..N).find(|&i| v[i] != mix(i as u64)) {
        fail(format_args!("Vec: element {i} is {:#x}", v[i]));
    }
    let grown = v.capacity();
    v.truncate(1000);
    v.shrink_to_fit();
    ensure!(
        v.capacity() == 1000 && (0..1000).all(|i| v[i] == mix(i as u64)),
        "Vec: capacity {} or contents wrong after shrink_to_fit",
        v.capacity()
    );
    let sum: u64 = v.iter().fold(0, |a, &x| a.wrapping_add(x));
    let expected = (0..1000).fold(0u64, |a, i| a.wrapping_add(mix(i)));
    ensure!(sum == expected, "Vec: sum {sum:#x}, expected {expected:#x}");
    outln!("  Vec: {N} pushes (capacity {grown}, {moves} moves), shrunk to 1000");
}

/// `format!` and a `String` built with `write!`, parsed back.
fn string(ram: &Range<usize>) {
    let s = format!("{}-{:#x}-{:?}-{:>5}", 42, 255, "kmem", 7);
    ensure!(s == "42-0xff-\"kmem\"-    7", "format!: got {s:?}");
    let mut long = String::new();
    for i in 0..5000u32 {
        if write!(long, "{i},").is_err() {
            fail(format_args!("String: write! failed"));
        }
    }
    ensure!(
        in_ram(ram, long.as_ptr() as usize, long.capacity()),
        "String: buffer outside the booted region"
    );
    let mut count = 0u32;
    for (i, part) in long.split_terminator(',').enumerate() {
        ensure!(
            part.parse::<usize>() == Ok(i),
            "String: field {i} is {part:?}"
        );
        count += 1;
    }
    ensure!(count == 5000, "String: {count} fields, expected 5000");
    let upper = long.replace(',', ";").to_uppercase();
    ensure!(
        upper.len() == long.len() && upper.starts_with("0;1;2;"),
        "String: replace/to_uppercase gave {:?}...",
        &upper[..upper.len().min(16)]
    );
    outln!("  String: {s}, {} bytes of formatted numbers", long.len());
}

/// `BTreeMap`: 10 007 keys inserted in scrambled order, every third
/// removed, the rest checked in order.
fn btree() {
    const P: u64 = 10_007; // prime: `i * 7919 % P` visits every key once
    let mut map = BTreeMap::new();
    for i in 0..P {
        let key = i * 7919 % P;
        ensure!(
            map.insert(key, mix(key)).is_none(),
            "BTreeMap: key {key} inserted twice"
        );
    }
    for key in (0..P).filter(|k| k % 3 == 0) {
        ensure!(
            map.remove(&key) == Some(mix(key)),
            "BTreeMap: remove({key}) lost the value"
        );
    }
    let expected = (0..P).filter(|k| k % 3 != 0);
    ensure!(
        map.len() == expected.clone().count(),
        "BTreeMap: {} keys left",
        map.len()
    );
    for ((&key, &value), want) in map.iter().zip(expected) {
        ensure!(
            key == want && value == mix(key),
            "BTreeMap: found {key} => {value:#x}, expected key {want}"
        );
    }
    let range: u64 = map.range(100..200).map(|(k, _)| k).sum();
    let want: u64 = (100..200).filter(|k| k % 3 != 0).sum();
    ensure!(
        range == want,
        "BTreeMap: range sum {range}, expected {want}"
    );
    outln!(
        "  BTreeMap: {P} inserts, {} removes, {} keys in order",
        P - map.len() as u64,
        map.len()
    );
}

/// `Box`: a page-sized value, a large boxed slice (a page run) and trait
/// objects.
fn boxes(ram: &Range<usize>) {
    let page = Box::new([7u64; 512]);
    ensure!(
        in_ram(ram, page.as_ptr() as usize, 4096) && page.iter().all(|&x| x == 7),
        "Box<[u64; 512]>: wrong place or contents"
    );
    let big: Box<[u8]> = vec![0xA5; 40_000].into_boxed_slice();
    ensure!(
        in_ram(ram, big.as_ptr() as usize, big.len())
            && big.len() == 40_000
            && big.iter().all(|&b| b == 0xA5),
        "Box<[u8]> of 40000: wrong place or contents"
    );
    let offset = mix(3);
    let fns: Vec<Box<dyn Fn(u64) -> u64>> = vec![
        Box::new(move |x| x.wrapping_add(offset)),
        Box::new(|x| x * 2),
        Box::new(mix),
    ];
    let out: Vec<u64> = fns.iter().map(|f| f(21)).collect();
    ensure!(
        out == [21u64.wrapping_add(offset), 42, mix(21)],
        "Box<dyn Fn>: got {out:?}"
    );
    outln!("  Box: 4 KiB value, 40000-byte slice, 3 closures");
}

/// `VecDeque` pushed at both ends and rotated, `BinaryHeap` drained in
/// order, `LinkedList` appended and reversed.
fn queues() {
    let mut dq: VecDeque<u64> = VecDeque::new();
    for i in 0..3000 {
        dq.push_back(i);
        dq.push_front(u64::MAX - i);
    }
    dq.rotate_left(3000);
    ensure!(
        dq.len() == 6000 && dq.iter().take(3000).copied().eq(0..3000),
        "VecDeque: wrong order after rotate_left"
    );
    ensure!(
        dq.back() == Some(&u64::MAX) && dq.pop_front() == Some(0),
        "VecDeque: wrong ends"
    );

    let mut heap: BinaryHeap<u64> = (0..5000).map(mix).collect();
    let mut prev = u64::MAX;
    let mut popped = 0;
    while let Some(x) = heap.pop() {
        ensure!(x <= prev, "BinaryHeap: {x:#x} popped after {prev:#x}");
        prev = x;
        popped += 1;
    }
    ensure!(popped == 5000, "BinaryHeap: {popped} popped, expected 5000");

    let mut list: LinkedList<u64> = (0..1000).collect();
    let mut tail: LinkedList<u64> = (1000..2000).collect();
    list.append(&mut tail);
    ensure!(
        list.len() == 2000 && list.iter().rev().copied().eq((0..2000).rev()),
        "LinkedList: wrong contents after append"
    );
    outln!("  VecDeque: 6000 at both ends; BinaryHeap: 5000 in order; LinkedList: 2000");
}

/// `Rc` and `Arc`: shared, counted, freed with the last owner.
fn shared() {
    let rc = Rc::new(Vec::from([1u64, 2, 3]));
    let clones: Vec<Rc<Vec<u64>>> = (0..100).map(|_| Rc::clone(&rc)).collect();
    ensure!(
        Rc::strong_count(&rc) == 101 && clones.iter().all(|c| c[2] == 3),
        "Rc: count {}",
        Rc::strong_count(&rc)
    );
    drop(clones);
    let arc: Arc<str> = Arc::from("shared without std");
    let other = Arc::clone(&arc);
    ensure!(
        Arc::strong_count(&arc) == 2 && &*other == "shared without std",
        "Arc: count {}",
        Arc::strong_count(&arc)
    );
    ensure!(Rc::strong_count(&rc) == 1, "Rc: clones not released");
    outln!("  Rc/Arc: 101 owners, then 1");
}
