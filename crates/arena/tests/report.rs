//! `Arena::report`, Akaros' stats report: the summary, and with
//! `ReportDetail::Segments` every span and segment in address order.

use kmem_arena::{Arena, ReportDetail};
use kmem_physmem::PhysMem;

#[test]
fn the_report_lists_segments_only_when_asked() {
    let ram = PhysMem::new(1 << 20);
    let base = ram.base_arena("base", 64);
    let mut ids = Arena::builder("ids")
        .quantum(16)
        .span(0x1000, 0x1000)
        .tags_from(&base)
        .build()
        .unwrap();
    let a = ids.alloc(0x100, Default::default()).unwrap();
    let b = ids.alloc(0x40, Default::default()).unwrap();
    ids.free(a, 0x100).unwrap();

    let mut summary = String::new();
    ids.report(&mut summary, ReportDetail::Summary).unwrap();
    for line in [
        "Arena: ids",
        "\tquantum: 16",
        "\tsource: none",
        "\t\tAmt free: 4032 (0xfc0)",
        "\t\tAmt alloc: 64 (0x40), nr allocs 1",
        "\t\tAmt total: 4096",
    ] {
        assert!(summary.contains(line), "{line:?} missing from\n{summary}");
    }
    assert!(
        !summary.contains("start 0x"),
        "segments in the summary:\n{summary}"
    );

    let mut full = String::new();
    ids.report(&mut full, ReportDetail::Segments).unwrap();
    assert!(full.starts_with(&summary[..summary.find("\tStats:").unwrap()]));
    let segments: Vec<&str> = full.lines().filter(|l| l.contains("start 0x")).collect();
    let alloc = format!("\t\tAloc: start {b:#x} + 0x40");
    assert_eq!(segments.len(), 4, "{full}");
    assert_eq!(segments[0], "\tSpan: start 0x1000 + 0x1000");
    assert!(segments.contains(&alloc.as_str()), "{full}");
    assert_eq!(
        segments.iter().filter(|l| l.contains("Free:")).count(),
        2,
        "{full}"
    );

    ids.free(b, 0x40).unwrap();
    ids.destroy().unwrap();
}
