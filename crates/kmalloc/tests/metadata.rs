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
    let boxes: Vec<Box<u64>> = (0..4_000_000u64).map(Box::new).collect();
    assert_eq!(boxes.iter().map(|b| **b).sum::<u64>(), 3_999_999 * 2_000_000);
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
