//! Failure injection through kmalloc with the `fail-inject` feature
//! (`kmalloc::fail`): allocations (`Layer::Kmalloc`) failing every k-th
//! time or at a seeded random 1 in n, and every layer of the stack failing
//! at once (imports, tag refills, magazines, slab growth, kmalloc).
//!
//! A refused allocation (or moving `realloc`) returns `Exhausted` (null
//! through `GlobalAlloc`), only when a failure was injected, and leaves the
//! objects of every class cache and the caller's block as they were; the
//! checkers of every cache and arena pass as the run goes; and once
//! everything is freed and reaped, the page arena holds nothing: nothing
//! leaked.
//!
//! The plans are process-wide: each test holds a [`FailPlans`] guard. Each
//! prints a `fail-inject ...` line with what it injected (`--nocapture`
//! shows them).

mod common;

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use common::{check, layout, snapshot, with_kmalloc, Snapshot};
use kmalloc::fail::{self, Layer, Plan};
use kmalloc::{AllocError, Kmalloc};
use kmem_magazine::ThreadCpus;
use kmem_physmem::faults::FailPlans;
use kmem_physmem::{scale, seed, Rng};

type K<'a> = Kmalloc<'a, ThreadCpus>;

const MEM: usize = 64 << 20;

/// A block the test holds, with the byte written at its start.
struct Held {
    ptr: NonNull<u8>,
    layout: Layout,
    tag: u8,
}

/// A random layout: mostly class sizes, some large runs of pages, some
/// over-aligned.
fn random_layout(rng: &mut Rng) -> Layout {
    let size = match rng.below(10) {
        0 => rng.range(1, 256 << 10),
        1..=3 => rng.range(1, 4096),
        _ => rng.range(1, 512),
    };
    let max_shift = if rng.chance(1, 20) { 13 } else { 7 };
    layout(size, rng.pow2(0, max_shift))
}

/// Total failures injected at every layer.
fn injected_anywhere() -> u64 {
    Layer::ALL.into_iter().map(fail::injected).sum()
}

/// What a refused request may not change: the objects held from each
/// class cache (name, in use, bad frees), and the large allocations and
/// frees (failures aside).
#[derive(Debug, PartialEq, Eq)]
struct HeldState {
    classes: Vec<(String, u64, u64)>,
    large: (u64, u64),
}

fn held_state(k: &K<'_>) -> HeldState {
    let Snapshot { in_use, large, .. } = snapshot(k);
    let classes = in_use
        .into_iter()
        .filter(|(name, ..)| name.starts_with("kmalloc_"))
        .collect();
    HeldState {
        classes,
        large: (large.0, large.1),
    }
}

fn free(k: &K<'_>, h: Held) {
    // SAFETY: `ptr` holds at least a byte, written at allocation.
    assert_eq!(unsafe { h.ptr.as_ptr().read() }, h.tag, "canary");
    // SAFETY: allocated with this layout by `k`, freed once.
    unsafe { k.free(h.ptr, h.layout) }.unwrap();
}

/// What [`run`] saw.
struct Outcome {
    requests: u64,
    refused: u64,
    /// Failures injected at each layer (in [`Layer::ALL`] order).
    injected: [u64; 5],
}

/// Random `alloc`, `alloc_zeroed`, moving `realloc` and `free` on `k` with
/// whatever plans are set. Each refusal is `Exhausted`, comes with an
/// injected failure, and changes neither the class caches' objects nor the
/// large counts (a large refusal is counted in `large_fails`); a refused
/// `realloc` leaves the old block intact. Then every plan is cleared,
/// everything is freed and reaped, and the page arena must hold nothing.
fn run(k: &K<'_>, rng: &mut Rng, steps: usize, label: &str) -> Outcome {
    let mut held: Vec<Held> = Vec::new();
    let (mut requests, mut refused) = (0, 0);
    for step in 0..steps {
        let ctx = || format!("{label}, step {step}");
        let target = if (step / 300) % 2 == 0 { 150 } else { 10 };
        if held.len() < target && rng.chance(2, 3) {
            let l = random_layout(rng);
            let moving = !held.is_empty() && rng.chance(1, 5);
            let (before, injected) = (held_state(k), injected_anywhere());
            let large_fails = k.large_counts().2;
            requests += 1;
            let got = if moving {
                // A realloc to another home (its class or run changes).
                let i = rng.below(held.len() as u64) as usize;
                let old = &held[i];
                let new_size = if old.layout.size() > 4096 {
                    64
                } else {
                    64 << 10
                };
                // SAFETY: allocated with this layout, not used until the
                // result says who owns it.
                match unsafe { k.realloc(old.ptr, old.layout, new_size) } {
                    Ok(p) => {
                        let old = held.swap_remove(i);
                        // The canary moved with the contents.
                        held.push(Held {
                            ptr: p,
                            layout: layout(new_size, old.layout.align()),
                            tag: old.tag,
                        });
                        Ok(())
                    }
                    Err(e) => {
                        // SAFETY: the old block is still ours and intact.
                        let first = unsafe { old.ptr.as_ptr().read() };
                        assert_eq!(first, old.tag, "{}: realloc refusal lost the block", ctx());
                        Err((e, layout(new_size, old.layout.align())))
                    }
                }
            } else {
                let zeroed = rng.chance(1, 4);
                let got = if zeroed {
                    k.alloc_zeroed(l)
                } else {
                    k.alloc(l)
                };
                match got {
                    Ok(p) => {
                        assert_eq!(p.as_ptr() as usize % l.align(), 0, "{}", ctx());
                        if zeroed {
                            // SAFETY: `l.size()` bytes, just allocated.
                            let bytes =
                                unsafe { core::slice::from_raw_parts(p.as_ptr(), l.size()) };
                            assert!(bytes.iter().all(|&b| b == 0), "{}: not zeroed", ctx());
                        }
                        let tag = rng.below(256) as u8;
                        // SAFETY: at least a byte, ours.
                        unsafe { p.as_ptr().write(tag) };
                        held.push(Held {
                            ptr: p,
                            layout: l,
                            tag,
                        });
                        Ok(())
                    }
                    Err(e) => Err((e, l)),
                }
            };
            if let Err((e, l)) = got {
                assert_eq!(e, AllocError::Exhausted, "{}", ctx());
                assert!(
                    injected_anywhere() > injected,
                    "{}: refused without a fault",
                    ctx()
                );
                assert_eq!(held_state(k), before, "{}: refusal changed it", ctx());
                if k.class_for(l).is_none() {
                    assert!(k.large_counts().2 > large_fails, "{}: not counted", ctx());
                }
                refused += 1;
            }
        } else if !held.is_empty() {
            free(k, held.swap_remove(rng.below(held.len() as u64) as usize));
        }
        if step % 64 == 63 {
            check(k);
        }
    }
    let injected = Layer::ALL.map(fail::injected);
    fail::clear_all();
    for h in held {
        free(k, h);
    }
    k.reap();
    check(k);
    let snap = snapshot(k);
    for (name, in_use, bad) in &snap.in_use {
        assert_eq!(*bad, 0, "{label}: bad frees at {name}");
        if name.starts_with("kmalloc_") {
            assert_eq!(*in_use, 0, "{label}: objects lost in {name}");
        }
    }
    assert_eq!(
        snap.large.0, snap.large.1,
        "{label}: large allocations lost"
    );
    assert_eq!(k.pages().stats().allocated, 0, "{label}: pages still held");
    Outcome {
        requests,
        refused,
        injected,
    }
}

/// Every plan at the kmalloc layer alone: each injected failure refuses
/// exactly one request.
#[test]
fn kmalloc_fails_every_kth_or_one_in_n() {
    let _plans = FailPlans::take();
    let seed = seed(0x6661_696c_0000_0006);
    let mut rng = Rng::new(seed);
    for plan in FailPlans::standard(seed) {
        with_kmalloc(MEM, |k| {
            fail::set(Layer::Kmalloc, plan);
            let out = run(k, &mut rng, 1200 * scale(), &format!("{plan:?}"));
            let injected = out.injected[Layer::Kmalloc as usize];
            assert!(injected > 0, "{plan:?} never bit");
            assert_eq!(
                out.refused, injected,
                "{plan:?}: a failure without a refusal"
            );
            println!(
                "fail-inject kmalloc {plan:?} (seed {seed}): {} requests, {injected} failed on \
                 purpose and refused ({} large), 0 bytes leaked",
                out.requests,
                k.large_counts().2
            );
        });
    }
}

/// The `GlobalAlloc` adapter turns an injected failure into null, and a
/// refused `realloc` leaves the block in place.
#[test]
fn global_alloc_returns_null_on_an_injected_failure() {
    let _plans = FailPlans::take();
    with_kmalloc(MEM, |k| {
        let l = layout(100, 8);
        // SAFETY: a non-zero layout.
        let p = unsafe { GlobalAlloc::alloc(k, l) };
        assert!(!p.is_null());
        // SAFETY: 100 bytes, ours.
        unsafe { p.write(7) };
        fail::set(Layer::Kmalloc, Plan::EveryKth(1));
        // SAFETY: as above; `p` was allocated with `l`.
        unsafe {
            assert!(GlobalAlloc::alloc(k, l).is_null());
            assert!(GlobalAlloc::alloc_zeroed(k, layout(1 << 20, 4096)).is_null());
            assert!(GlobalAlloc::realloc(k, p, l, 5000).is_null());
            assert_eq!(p.read(), 7, "the block stayed");
        }
        assert_eq!(fail::injected(Layer::Kmalloc), 3);
        assert_eq!(k.large_counts(), (0, 0, 1));
        fail::set(Layer::Kmalloc, Plan::Off);
        // SAFETY: allocated above with `l`, freed once.
        unsafe { GlobalAlloc::dealloc(k, p, l) };
        check(k);
    });
}

/// Every layer fails at once, through kmalloc: span imports into the page
/// arena, tag refills of the base and page arenas, magazines, slab growth
/// (class caches, the page arena's quantum caches, the bootstrap caches)
/// and kmalloc itself. Whatever fails below, a request is refused with
/// `Exhausted` or served, nothing is lost, and every checker passes.
#[test]
fn every_layer_fails_at_once() {
    let _plans = FailPlans::take();
    let seed = seed(0x6661_696c_0000_0007);
    let mut rng = Rng::new(seed);
    // In `Layer::ALL` order; tag refills are rare, kmalloc failures stop a
    // request before it reaches the layers below.
    let periods = [7, 2, 3, 5, 11];
    let plans: [fn(u64, u64) -> Plan; 2] =
        [|k, _| Plan::EveryKth(k), |n, seed| Plan::OneIn { n, seed }];
    for (i, plan) in plans.into_iter().enumerate() {
        with_kmalloc(MEM, |k| {
            for (layer, period) in Layer::ALL.into_iter().zip(periods) {
                fail::set(layer, plan(period, seed ^ period));
            }
            let label = ["every k-th", "one in n"][i];
            let out = run(k, &mut rng, 2000 * scale(), label);
            let injected: u64 = out.injected.iter().sum();
            assert!(injected > 0 && out.refused > 0, "{label}: never bit");
            assert!(
                out.refused <= injected,
                "{label}: refused without a failure"
            );
            let per_layer: Vec<_> = Layer::ALL.into_iter().zip(out.injected).collect();
            println!(
                "fail-inject every layer, {label} (periods {periods:?}, seed {seed}): {} \
                 requests, failures injected {per_layer:?}, {} refused, 0 bytes leaked",
                out.requests, out.refused
            );
        });
    }
}
