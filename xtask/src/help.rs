//! `cargo xtask help`: the usage text, printed for `help`, `-h`, `--help`, no
//! arguments, and (on stderr) after a bad command line.

/// Usage listing every command and flag.
pub(crate) const USAGE: &str = "\
usage: cargo xtask <command> [flags]

commands:
  test [--release] [--long]
        cargo test --workspace --features kmalloc/std (unit, integration and
        doc tests, the std global allocator's test binary included), then
        the failure-injection tests (cargo test -p kmem-arena -p kmem-magazine
        -p kmem-slab -p kmalloc --features <each>/fail-inject,kmalloc/std
        --test fail_inject, and kmalloc's doc tests with those features and
        kmalloc/site-stats), then the per-call-site accounting tests (cargo
        test -p kmem-slab -p kmalloc --features <each>/site-stats,kmalloc/std
        --test site_stats), then std's collections over kmalloc as core's
        unstable Allocator (cargo +nightly test -p kmalloc --features nightly
        --test nightly_allocator --target-dir target/nightly; skipped, with a
        message, without a nightly toolchain), then the program that depends
        on kmalloc alone (ci/one-dep), then `nostd`. `lint` runs first.
        --release  build and run the tests with optimizations
        --long     set KMEM_TEST_SCALE=10 for the tests (longer randomized runs)
        KMEM_TEST_SCALE=<n> in the environment is passed through to the tests,
        which scale their iteration counts by it (default 1); --long overrides it.
  lint
        cargo fmt --check and cargo clippy -D warnings over the workspace
        (every feature but kmalloc/nightly) and the two programs in ci/
        (nostd-boot, one-dep), cargo +nightly clippy -D warnings on kmalloc with its
        nightly feature (skipped, with a message, without a nightly
        toolchain), cargo doc with RUSTDOCFLAGS=-D warnings (every feature
        but kmalloc/nightly), then cargo package --workspace
        --allow-dirty --exclude xtask --exclude kmem-benches (every library
        crate packaged and its package built, sibling crates resolved from
        the packages made before them).
  nostd
        1. cargo build -p <crate> --no-default-features for every no_std
           library crate under crates/ (one build per crate, so no feature
           unification hides a std dependency), and kmalloc with its
           fail-inject and site-stats features (failure injection in every
           crate, per-call-site accounting in kmem-slab);
        2. the same for each installed bare-metal target (x86_64-unknown-none,
           thumbv7em-none-eabi[hf], riscv64gc-unknown-none-elf,
           aarch64-unknown-none), skipped if none is installed;
        3. build ci/nostd-boot (a #![no_std] #![no_main] static Linux program
           without libc that boots an arena over a static buffer), run it and
           check its success line.
  loom [--preemptions <n>] [-- <test args>]
        the loom models of the magazine layer (crates/magazine/tests/loom.rs):
        RUSTFLAGS=\"--cfg loom\" cargo test -p kmem-magazine --features loom
        --test loom --release --target-dir target/loom, with debug assertions
        on, one model at a time; then a summary of the executions each
        explored.
        Not part of `test`.
        --preemptions <n>  set LOOM_MAX_PREEMPTIONS (default: each model's
                           own bound, exhaustive where affordable)
        Arguments after `--` go to the test binary (e.g. a model name).
  stress [--threads N] [--ops M] [--seed S]
        the multi-threaded stress binary (crates/kmalloc/examples/stress.rs)
        in release mode: every layer at once (kmalloc with realloc, an
        object cache with a constructor, a memory arena with xalloc, an ID
        arena with quantum caches), canaries in every object, a third of the
        objects freed by other threads, every checker and count at the end.
        Prints the operations done and the violations; fails on any.
        Defaults: 4 threads, 1000000 operations each, seed 1.
  stress --big-heap [--gib G]
        kmalloc as the global allocator of a program with a big heap
        (crates/kmalloc/examples/big_heap.rs, release mode): 28 million
        boxes freed, then a size class not used before, then mixed sizes
        up to G GiB live (default 6; needs that much memory and more), a
        random half replaced, every object checked. Prints the time, the
        metadata's size and the peak RSS of each phase; fails on a
        corrupted object, aborts if an allocation fails. About 25 s here.
  sanitize
        nightly AddressSanitizer over the test suite and the stress binary,
        with --cfg kmem_asan: free segments, free objects (magazines too) and
        unused fake RAM are poisoned, so a use after free inside the managed
        memory is reported; leaks checked (suppressions: ci/lsan.supp). Then
        ThreadSanitizer over the stress binary. Skips without nightly.
  fuzz [--seconds <t>] [<target>...]
        the cargo-fuzz targets in fuzz/ (harnesses in crates/fuzz: arena,
        caches, kmalloc; all by default), each for <t> seconds (default 60):
        cargo +nightly fuzz run <target>, built with --cfg kmem_asan, reading
        the seed corpus fuzz/corpus/<target> (new inputs go to
        fuzz/target/corpus/<target>); then each target's executions and
        crashes. Installs cargo-fuzz if missing; skipped without a nightly
        toolchain. A crash leaves its input in fuzz/artifacts/<target>/ and
        fails the task. Not part of `test`, which replays the corpus.
  demo
        cargo run --release -p kmalloc --features std --example demo: boots
        the whole stack over 64 MiB of fake physical memory, runs a mixed
        workload on two threads (8 B to 256 KiB, half freed on the other
        thread, an object cache with a constructor, an ID arena with xalloc)
        and prints the ::kmastat report of every cache and arena.
  bench [--full] [--criterion] [--programs | --malloc] [--json PATH] [--report DIR]
        [-- <suite args> | <workloads>]
        the side-by-side suite: cargo run --profile bench -p kmem-benches
        --bin kmem-suite (benchmarks B1-B10 and B12-B14, kmem against its
        peers, interleaved in one process; thin LTO as cargo bench builds):
        a table with each contender's median and its ratio to kmem, the
        project's targets met or not, a markdown report with SVG charts
        (default target/bench-report/), JSON records with --json. Then,
        unless filters leave it out (filter `idle` to run it alone),
        kmem-idle: a program with kmalloc as its global allocator frees a
        burst of 256 MiB of 32-byte boxes (1 GiB with --full) and idles
        2 s; its resident set over that time, as one JSON line.
        Quick by default (a few minutes on 2 cores).
        --full       the suite's long mode, then every criterion bench with
                     criterion's default windows
        --criterion  also the criterion benches, with short windows
        --programs   instead of the suite, B11: real programs
                     (benches/programs, its own workspace: serde_json, syn,
                     regex, collections, rayon, crossbeam-channel workloads)
                     built with --release three times, with glibc (System),
                     kmalloc and mimalloc as the global allocator; each
                     workload run 3 times per allocator (11 with --full),
                     interleaved: median wall time and peak RSS
                     (/usr/bin/time), then once under valgrind's callgrind
                     at a smaller scale for its instruction count, with
                     KMEM_UPKEEP_MS=0 (kmalloc's timed reaper would run
                     many more passes under valgrind's slowdown; skipped
                     without valgrind); checksums must agree. A markdown
                     table with ratios to glibc and geometric means, also
                     written with the JSON to <report dir>/programs.md and
                     programs.json (--json PATH for the JSON elsewhere).
                     About 4 minutes from clean on 2 cores.
        --malloc     instead of the suite, B15: programs of the distribution
                     (python3, perl, sqlite3, sort, gzip, xz, g++'s cc1plus
                     and a multi-threaded C program, the workloads of
                     kmem-malloc's tests at a larger scale) with glibc's malloc, kmem's
                     (target/release/libkmem_malloc.so) and mimalloc's
                     (the distribution's libmimalloc.so.2, else built with
                     gcc from the mimalloc crate's sources) preloaded; runs,
                     medians, callgrind counts (KMEM_UPKEEP_MS=0) and
                     reports as with --programs, to <report dir>/malloc.md
                     and malloc.json.
        Arguments after `--` go to the suite (benchmark filters such as B5,
        --threads 1,2,4), or with --programs or --malloc name the workloads
        to run.
  help
        this text.

environment:
  CARGO             the cargo to run (set by cargo itself; default `cargo`)
  KMEM_TEST_SCALE   iteration multiplier read by the randomized tests
  LOOM_*            loom's own settings (e.g. LOOM_MAX_PREEMPTIONS), read by
                    the loom models
";
