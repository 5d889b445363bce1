//! A test binary whose `#[global_allocator]` is kmalloc with a small first
//! metadata reservation (4 MiB): the metadata outgrows it and the base
//! arena adds reservations, so nothing fails for want of metadata. The
//! long form (tens of millions of objects, 6 GiB live) is
//! `cargo xtask stress --big-heap`.

use kmalloc::KmallocGlobal;

const FIRST: usize = 4 << 20;

#[global_allocator]
static KMALLOC: KmallocGlobal = KmallocGlobal::with_metadata(FIRST);

/// Millions of small objects freed fill the depots with full magazines
/// (metadata, up to the depots' caps); then 150 000 live 1200-byte
/// objects, a size class whose slabs keep a bufctl per object and an
/// address hash (metadata again), need more than the first reservation.
#[test]
fn metadata_grows_past_its_first_reservation() {
    // One at a time: one grows the metadata, the other checks it does not.
    let _serial = kmem_physmem::serial();
    let boxes: Vec<Box<u64>> = (0..4_000_000u64).map(Box::new).collect();
    assert_eq!(
        boxes.iter().map(|b| **b).sum::<u64>(),
        3_999_999 * 2_000_000
    );
    drop(boxes);
    let vecs: Vec<Vec<u8>> = (0..150_000u32).map(|i| vec![i as u8; 1200]).collect();
    assert!(vecs.iter().enumerate().all(|(i, v)| v[1199] == i as u8));
    let k = KMALLOC.get().expect("booted");
    let base = k.caches().base();
    assert!(
        base.amt_total() > FIRST,
        "the metadata grew: {} bytes",
        base.amt_total()
    );
    base.check().unwrap();
}

/// A request that more memory could not serve (an address window no fresh
/// region falls in) does not grow the metadata: each failure used to add
/// a reservation as large as the arena (16 of them: 7 MiB to 511 GiB,
/// found in review).
#[test]
fn a_failed_constrained_xalloc_does_not_grow_the_metadata() {
    // One at a time: one grows the metadata, the other checks it does not.
    let _serial = kmem_physmem::serial();
    drop(core::hint::black_box(Box::new(1u8)));
    let base = KMALLOC.get().expect("booted").caches().base();
    let low = kmem_arena::Constraints::new().max_addr(1 << 16);
    let before = base.amt_total();
    for _ in 0..16 {
        assert!(base.xalloc(4096, &low).is_err());
    }
    let after = base.amt_total();
    assert!(
        after <= 2 * before,
        "16 failed xallocs grew the metadata from {} MiB to {} MiB",
        before >> 20,
        after >> 20
    );
}
