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
const BAD_FREES: [&str; 5] = [
    "double",
    "double-other-thread",
    "wrong-size",
    "interior",
    "realloc-after-free",
];

/// The child's part: does the bad free `what`, which must not return.
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
            "interior" => dealloc(b.add(8), Layout::from_size_align(64, 8).unwrap()),
            "realloc-after-free" => {
                dealloc(b, l);
                let _ = realloc(b, l, 5000);
            }
            _ => panic!("unknown bad free {what}"),
        }
    }
    eprintln!("kmem-test: the bad free `{what}` returned");
    std::process::exit(0);
}

#[test]
fn bad_frees_through_the_global_allocator_abort() {
    if let Ok(what) = std::env::var("KMEM_BAD_FREE") {
        bad_free_child(&what);
        return;
    }
    let me = std::env::current_exe().unwrap();
    for what in BAD_FREES {
        let out = std::process::Command::new(&me)
            .args([
                "--exact",
                "bad_frees_through_the_global_allocator_abort",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("KMEM_BAD_FREE", what)
            .output()
            .unwrap();
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
