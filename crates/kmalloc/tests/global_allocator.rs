//! A test binary whose `#[global_allocator]` is kmalloc (`KmallocGlobal`,
//! booted on the first allocation over memory from the OS): the test
//! harness itself allocates through it, and a mixed workload of `Vec`,
//! `String`, `HashMap` and `BTreeMap` runs on several threads, handing
//! collections between them.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::thread;

use kmalloc::KmallocGlobal;

#[global_allocator]
static KMALLOC: KmallocGlobal = KmallocGlobal::new();

#[test]
fn the_global_allocator_is_kmalloc() {
    let v = core::hint::black_box(vec![1u8; 100]);
    let k = KMALLOC.get().expect("booted by the first allocation");
    let class = k
        .class_for(core::alloc::Layout::new::<[u8; 100]>())
        .unwrap();
    assert!(class.owns(v.as_ptr() as usize));
}

/// One worker's share: build collections, check them, hand some to the
/// next thread.
/// What a worker hands to the collector.
type Parcel = (u64, Vec<String>, BTreeMap<u64, Vec<u8>>);

fn work(id: u64, rounds: u64, tx: &mpsc::Sender<Parcel>) {
    let mut map: HashMap<u64, String> = HashMap::new();
    for r in 0..rounds {
        let n = (id * 7919 + r * 104_729) % 1000;
        let mut v: Vec<u64> = (0..n).collect();
        v.retain(|x| x % 3 != 0);
        let s: String = v.iter().map(|x| format!("{x},")).collect();
        map.insert(r, s.clone());
        if map.len() > 64 {
            let oldest = r - 64;
            let old = map.remove(&oldest).expect("kept");
            assert!(old.is_empty() || old.ends_with(','));
        }
        let mut tree = BTreeMap::new();
        for k in 0..(n % 200) {
            tree.insert(k * 31 % 197, vec![k as u8; (k % 50) as usize]);
        }
        if r % 8 == 0 {
            tx.send((id, vec![s; 3], tree)).expect("receiver alive");
        }
    }
}

#[test]
fn mixed_collections_across_threads() {
    let rounds = 2_000 * kmem_physmem::scale() as u64;
    let (tx, rx) = mpsc::channel();
    let workers: Vec<_> = (0..4)
        .map(|id| {
            let tx = tx.clone();
            thread::spawn(move || work(id, rounds, &tx))
        })
        .collect();
    drop(tx);
    let mut received = 0;
    for (_, strings, tree) in rx {
        assert_eq!(strings.len(), 3);
        assert!(strings.windows(2).all(|w| w[0] == w[1]));
        for (k, v) in &tree {
            // Every value is `[j as u8; j % 50]` for the key `k = j * 31 % 197`.
            assert!(*k < 197 && v.len() < 50);
            assert!(v.windows(2).all(|w| w[0] == w[1]));
        }
        received += 1;
    }
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(received, 4 * rounds.div_ceil(8));
    let k = KMALLOC.get().unwrap();
    k.caches().for_each(|c| c.check().unwrap());
    k.pages().check().unwrap();
    assert!(KmallocGlobal::os_pages().mapped() > 0);
}

/// The bad frees a program can make through the global allocator, each
/// run in a child process (this test binary again, told which one by
/// `KMEM_BAD_FREE`): each must stop the program with a message, as glibc's
/// "free(): double free detected" does, instead of handing one block to
/// two owners.
const BAD_FREES: [&str; 6] = [
    "double",
    "double-other-thread",
    "wrong-size",
    "wrong-size-large-class",
    "interior",
    "realloc-after-free",
];

/// The child's part: does the bad free `what`, which must not return (or
/// the clean `workload`, which exits 0).
fn bad_free_child(what: &str) {
    use core::alloc::Layout;
    use std::alloc::{dealloc, realloc};
    let l = Layout::from_size_align(200, 8).unwrap();
    let b = Box::into_raw(Box::new([7u8; 200])).cast::<u8>();
    // SAFETY: the bad inputs under test; each call below that breaks the
    // contract is what the allocator must catch.
    unsafe {
        match what {
            "double" => {
                dealloc(b, l);
                dealloc(b, l);
            }
            "double-other-thread" => {
                dealloc(b, l);
                let addr = b as usize;
                thread::spawn(move || dealloc(addr as *mut u8, l))
                    .join()
                    .ok();
            }
            "wrong-size" => dealloc(b, Layout::from_size_align(40, 8).unwrap()),
            // A class whose slabs are 512 KiB: its check reads the end of
            // the 512 KiB block around `b`, mapped (the OS spans' aligned
            // reservations) though no slab of that class is there.
            "wrong-size-large-class" => dealloc(b, Layout::from_size_align(32 << 10, 8).unwrap()),
            "interior" => dealloc(b.add(8), Layout::from_size_align(64, 8).unwrap()),
            "realloc-after-free" => {
                dealloc(b, l);
                let _ = realloc(b, l, 5000);
            }
            // Debug mode only (`KMEM_DEBUG`): release mode does not look.
            "overrun" => {
                b.add(208).write(1);
                dealloc(b, l);
            }
            // The same class (208 bytes), another size.
            "same-class-size" => dealloc(b, Layout::from_size_align(201, 8).unwrap()),
            "write-after-free" => {
                dealloc(b, l);
                b.add(16).write(1);
                let again = std::alloc::alloc(l);
                assert!(!again.is_null());
            }
            "workload" => {
                let (tx, rx) = mpsc::channel();
                work(1, 300, &tx);
                drop(tx);
                assert!(rx.iter().count() > 0);
                eprintln!("kmem-test: workload done");
                std::process::exit(0);
            }
            _ => panic!("unknown bad free {what}"),
        }
    }
    eprintln!("kmem-test: the bad free `{what}` returned");
    std::process::exit(0);
}

/// Runs this test binary's `test` as a child doing `what`, with
/// `KMEM_DEBUG` set to `debug` (or unset).
fn child(test: &str, what: &str, debug: Option<&str>) -> std::process::Output {
    let me = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new(me);
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("KMEM_BAD_FREE", what)
        .env_remove("KMEM_DEBUG");
    if let Some(d) = debug {
        cmd.env("KMEM_DEBUG", d);
    }
    cmd.output().unwrap()
}

#[test]
fn bad_frees_through_the_global_allocator_abort() {
    if let Ok(what) = std::env::var("KMEM_BAD_FREE") {
        bad_free_child(&what);
        return;
    }
    for what in BAD_FREES {
        let out = child("bad_frees_through_the_global_allocator_abort", what, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{what}: the program went on\n{stderr}"
        );
        assert!(
            !stderr.contains("returned"),
            "{what}: the bad free returned\n{stderr}"
        );
        assert!(
            stderr.contains("kmalloc: free of") && stderr.contains("refused"),
            "{what}: no report\n{stderr}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            const SIGABRT: i32 = 6;
            assert_eq!(out.status.signal(), Some(SIGABRT), "{what}: {stderr}");
        }
        println!(
            "{what}: {}",
            stderr
                .lines()
                .find(|l| l.contains("kmalloc:"))
                .unwrap_or("")
        );
    }
}

/// `KMEM_DEBUG=1`: each detection is reported with the object, its cache
/// and the audit trail (code addresses named by symbol: the child's own
/// function), then the program aborts.
#[test]
fn kmem_debug_reports_with_the_audit_trail_and_aborts() {
    const TEST: &str = "kmem_debug_reports_with_the_audit_trail_and_aborts";
    if let Ok(what) = std::env::var("KMEM_BAD_FREE") {
        bad_free_child(&what);
        return;
    }
    for (what, found) in [
        ("double", "double free"),
        ("double-other-thread", "double free"),
        ("wrong-size", "object of cache kmalloc_208"),
        ("overrun", "buffer overrun"),
        ("same-class-size", "freed with another size"),
        ("write-after-free", "write after free"),
    ] {
        if cfg!(kmem_asan) && matches!(what, "overrun" | "write-after-free") {
            // AddressSanitizer reports these writes itself, first.
            continue;
        }
        let out = child(TEST, what, Some("1"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{what}: the program went on\n{stderr}"
        );
        assert!(
            stderr.contains("kmem debug: cache kmalloc_"),
            "{what}: {stderr}"
        );
        assert!(stderr.contains(found), "{what}: want {found:?}\n{stderr}");
        assert!(
            stderr.contains("last allocated by: code 0x"),
            "{what}: {stderr}"
        );
        // The allocation's return addresses, named: the child's own
        // function, or (in builds that do not inline) the standard
        // library's allocation functions it called.
        assert!(
            stderr.contains("bad_free_child") || stderr.contains("alloc::alloc"),
            "{what}: the audit does not name the allocating code\n{stderr}"
        );
        assert!(stderr.contains("aborting (KMEM_DEBUG)"), "{what}: {stderr}");
        if what.starts_with("double") || what == "write-after-free" {
            assert!(
                stderr.contains("last freed by: code 0x"),
                "{what}: {stderr}"
            );
        }
        println!("--- {what} ---\n{stderr}");
    }
}

/// `KMEM_DEBUG` with some parts, and with all, over a clean workload of
/// collections on several threads: no report, a normal exit.
#[test]
fn kmem_debug_runs_a_clean_workload() {
    const TEST: &str = "kmem_debug_runs_a_clean_workload";
    if let Ok(what) = std::env::var("KMEM_BAD_FREE") {
        bad_free_child(&what);
        return;
    }
    for debug in ["1", "audit,redzone", "poison", "checks", "bogus"] {
        let out = child(TEST, "workload", Some(debug));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "KMEM_DEBUG={debug}: {stderr}");
        assert!(stderr.contains("workload done"), "{stderr}");
        assert!(
            !stderr.contains("kmem debug:"),
            "KMEM_DEBUG={debug}: {stderr}"
        );
        assert_eq!(
            stderr.contains("unknown part"),
            debug == "bogus",
            "KMEM_DEBUG={debug}: {stderr}"
        );
    }
}

/// The reaper thread: a burst of objects, freed and left idle, goes back
/// to the page arena without any call of the program's (within three
/// passes of 500 ms; up to 20 s allowed on a loaded machine).
#[test]
fn the_reaper_gives_an_idle_burst_back() {
    type Obj = [u8; 5000];
    let k = KMALLOC.get().expect("booted");
    let class = k.class_for(core::alloc::Layout::new::<Obj>()).unwrap();
    let v: Vec<Box<Obj>> = (0..4000).map(|i| Box::new([i as u8; 5000])).collect();
    let peak = class.stats().slabs;
    assert!(peak > 100, "{peak}");
    drop(core::hint::black_box(v));
    let start = std::time::Instant::now();
    while class.stats().slabs * 10 > peak {
        assert!(
            start.elapsed() < core::time::Duration::from_secs(20),
            "slabs {} of {peak}, upkeep {:?}",
            class.stats().slabs,
            KmallocGlobal::upkeep()
        );
        std::thread::sleep(core::time::Duration::from_millis(50));
    }
    let up = KmallocGlobal::upkeep();
    assert!(up.passes >= 2 && up.given_back > 0, "{up:?}");
    assert!(class.magazine_stats().unwrap().magazines_trimmed > 0);
}

/// `KMEM_UPKEEP_MS` sets the reaper's interval, `0` turns it off: this test
/// runs itself again in child processes with those settings.
#[test]
fn upkeep_follows_kmem_upkeep_ms() {
    let _ = core::hint::black_box(vec![0u8; 64]);
    let up = KmallocGlobal::upkeep();
    match std::env::var("KMEM_UPKEEP_MS").ok().as_deref() {
        Some("0") => assert_eq!((up.interval_ms, up.running), (0, false), "{up:?}"),
        Some(ms) => assert_eq!((up.interval_ms, up.running), (ms.parse().unwrap(), true)),
        None => assert_eq!(
            (up.interval_ms, up.running),
            (kmalloc::UPKEEP_INTERVAL_MS, true)
        ),
    }
    if std::env::var_os("KMEM_UPKEEP_CHILD").is_some() {
        return;
    }
    for ms in ["0", "50"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "upkeep_follows_kmem_upkeep_ms",
                "--test-threads=1",
            ])
            .env("KMEM_UPKEEP_MS", ms)
            .env("KMEM_UPKEEP_CHILD", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "KMEM_UPKEEP_MS={ms}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
