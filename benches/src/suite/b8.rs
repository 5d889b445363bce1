//! B8, memory: utilisation at first failure ([`super::b8_util`]), arena
//! metadata bytes per live segment (what an ID arena takes from its tag
//! arena: tag pages, directory, hash table; the `pair_profile metadata`
//! measurement), and internal waste per requested size (class size over
//! request, over a sweep of every size 1..=32 KiB).

use core::alloc::{GlobalAlloc, Layout};

use kmalloc::Config as KConfig;
use kmem_arena::{Arena, Policy};
use kmem_magazine::ThreadCpus;
use kmem_physmem::{PhysMem, PAGE_SIZE};
use slabmalloc::ZoneAllocator;

use crate::heap_peers::{self, Region};
use crate::results::{Bench, Results};
use crate::suite::b2::pow10;
use crate::suite::Config;

/// Id and title.
pub const BENCH: Bench = Bench {
    id: "B8",
    title: "memory (utilisation, metadata, internal waste)",
};

/// Base-arena bytes an ID arena takes per live segment with `live`
/// segments, packed (contiguous) or fragmented (a free segment between
/// each two, so two tags per live allocation).
pub fn metadata_per_segment(live: usize, fragmented: bool) -> f64 {
    let ram = PhysMem::new(if live > 100_000 { 512 << 20 } else { 64 << 20 });
    let base = ram.base_arena("base", PAGE_SIZE);
    let start = base.stats().allocated;
    let ids = Arena::builder("ids")
        .quantum(1)
        .span(0, 1 << 40)
        .tags_from(&base)
        .build()
        .expect("ids arena");
    let step = if fragmented { 2 } else { 1 };
    let all: Vec<usize> = (0..step * live)
        .map(|_| ids.alloc(1, Policy::InstantFit).expect("id"))
        .collect();
    for &a in all.iter().skip(1).step_by(2).take_while(|_| fragmented) {
        ids.free(a, 1).expect("free");
    }
    ids.rescale_hash();
    ids.check().expect("ids arena inconsistent");
    assert_eq!(ids.stats().live, live);
    (base.stats().allocated - start) as f64 / live as f64
}

/// Size bands of the waste sweep: `(lo, hi)` inclusive.
pub const BANDS: [(usize, usize); 6] = [
    (1, 64),
    (65, 256),
    (257, 1024),
    (1025, 4096),
    (4097, 16384),
    (16385, 32768),
];

/// Mean and max of `(class - request) / class` in percent over the band,
/// `class(size)` giving the bytes a request of `size` occupies.
pub fn waste((lo, hi): (usize, usize), class: impl Fn(usize) -> usize) -> (f64, f64) {
    let (mut sum, mut max) = (0.0, 0.0f64);
    for s in lo..=hi {
        let c = class(s);
        assert!(c >= s, "class {c} below request {s}");
        let w = (c - s) as f64 / c as f64 * 100.0;
        sum += w;
        max = max.max(w);
    }
    (sum / (hi - lo + 1) as f64, max)
}

/// Runs B8.
pub fn run(cfg: &Config, res: &mut Results) {
    super::b8_util::run(BENCH, cfg.pick(3, 9), res);
    let sizes: &[usize] = if cfg.full {
        &[1_000, 10_000, 100_000, 1_000_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    let bt = core::mem::size_of::<vmem::Bt>() as f64;
    for &live in sizes {
        for fragmented in [false, true] {
            let p = format!(
                "metadata per live segment, 10^{} live, {}",
                pow10(live).trim_start_matches("10^"),
                if fragmented { "fragmented" } else { "packed" }
            );
            let k = metadata_per_segment(live, fragmented);
            res.push(BENCH, &p, "kmem", "bytes", k, 1, Some(1.0), true);
            let v = bt * if fragmented { 2.0 } else { 1.0 };
            let rec = res.push(
                BENCH,
                &p,
                "vmem (computed)",
                "bytes",
                v,
                1,
                Some(v / k),
                false,
            );
            rec.note = "size_of::<vmem::Bt>() per tag, one tag per segment; its 64 hash \
                        buckets and span tags not counted"
                .into();
        }
    }
    waste_sweep(res);
}

fn waste_sweep(res: &mut Results) {
    let mut mem = vec![0u8; 64 << 20];
    let kclass: Vec<usize> =
        kmalloc::boot(&mut mem, ThreadCpus::global(), &KConfig::default(), |k| {
            (0..=32768usize)
                .map(|s| {
                    if s == 0 {
                        0
                    } else {
                        k.usable_size(Layout::from_size_align(s, 8).expect("layout"))
                            .expect("usable size")
                    }
                })
                .collect()
        })
        .expect("B8 kmalloc boot");
    let buddy = heap_peers::buddy(Region::leak(1 << 20, 4096));
    let buddy_class = |s: usize| {
        let l = Layout::from_size_align(s, 8).expect("layout");
        let before = buddy.with(|h| h.stats_alloc_actual());
        // SAFETY: non-zero size.
        let p = unsafe { buddy.alloc(l) };
        let c = buddy.with(|h| h.stats_alloc_actual()) - before;
        // SAFETY: just allocated with `l`.
        unsafe { buddy.dealloc(p, l) };
        c
    };
    let slab_class = |s: usize| ZoneAllocator::get_max_size(s).expect("slabmalloc class");
    for band in BANDS {
        let p = |what: &str| format!("internal waste {}-{} B, {what}", band.0, band.1);
        let rows: [(&str, (f64, f64)); 3] = [
            ("kmalloc", waste(band, |s| kclass[s])),
            ("slabmalloc", waste(band, slab_class)),
            ("buddy", waste(band, buddy_class)),
        ];
        for (what, pick) in [("mean", 0), ("max", 1)] {
            let k = if pick == 0 {
                rows[0].1 .0
            } else {
                rows[0].1 .1
            };
            for (name, (mean, max)) in rows {
                let v = if pick == 0 { mean } else { max };
                res.push(
                    BENCH,
                    &p(what),
                    name,
                    "%",
                    v,
                    1,
                    (k > 0.0).then(|| v / k),
                    name == "kmalloc",
                );
            }
        }
    }
    res.note(
        BENCH.id,
        "internal waste: kmalloc from `Kmalloc::usable_size`, slabmalloc from \
         `ZoneAllocator::get_max_size`, buddy from its `stats_alloc_actual` around one \
         allocation; rlsf's `allocation_usable_size` needs its nightly `unstable` feature, and \
         talc, mimalloc and glibc expose no usable-size call through the APIs used here",
    );
}

#[cfg(test)]
mod tests {
    use super::waste;

    #[test]
    fn waste_of_power_of_two_classes() {
        let (mean, max) = waste((5, 8), |_| 8);
        assert!((mean - (3.0 + 2.0 + 1.0) / 4.0 / 8.0 * 100.0).abs() < 1e-9);
        assert!((max - 37.5).abs() < 1e-9);
        assert_eq!(waste((8, 8), |s| s), (0.0, 0.0));
    }
}
