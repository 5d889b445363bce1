//! `OsPages`, the OS page source behind `KmallocGlobal`: each span starts a
//! mapping aligned to 1 MiB and a multiple of it long, whose unused rest is
//! read-only, and a release unmaps it all.

use std::fs;

use kmalloc::OsPages;
use kmem_arena::Source;

const MIB: usize = 1 << 20;

/// The permissions of the mapping of `/proc/self/maps` that holds `addr`,
/// and its end.
fn mapping_of(addr: usize) -> Option<(String, usize)> {
    let maps = fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (range, perms) = (f.next()?, f.next()?);
        let (a, b) = range.split_once('-')?;
        let (a, b) = (
            usize::from_str_radix(a, 16).ok()?,
            usize::from_str_radix(b, 16).ok()?,
        );
        (a <= addr && addr < b).then(|| (perms.to_owned(), b))
    })
}

#[test]
fn spans_start_aligned_reservations_whose_rest_is_read_only() {
    let os = OsPages::new();
    for size in [4096, 3 * 4096, MIB, MIB + 4096] {
        let base = os.import(size).unwrap();
        let reserved = size.next_multiple_of(MIB);
        assert_eq!(base % MIB, 0, "{size}: span not aligned");
        assert_eq!(os.mapped(), reserved);
        let (perms, _) = mapping_of(base).expect("span mapped");
        assert!(perms.starts_with("rw"), "{size}: span {perms}");
        if reserved > size {
            let (perms, end) = mapping_of(base + size).expect("rest mapped");
            assert!(perms.starts_with("r-"), "{size}: rest {perms}");
            assert!(end >= base + reserved, "{size}: rest ends early");
        }
        // SAFETY: the span just imported, unused.
        unsafe { os.release(base, size) };
        assert_eq!(os.mapped(), 0);
    }
    assert_eq!(os.unmap_failures(), 0);
}
