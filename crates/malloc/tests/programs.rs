//! Real programs of the distribution under `LD_PRELOAD=libkmem_malloc.so`:
//! python3, perl, sqlite3, sort, gzip, xz, g++ and C programs built here.
//! Each runs twice, under glibc's malloc and under kmem's, and the two
//! outputs must be the same (and kmem's run must report nothing on
//! standard error). A missing program fails its test, naming the package
//! to install (`.ci/run` installs them).
//!
//! The library is built by a nested `cargo build -p kmem-malloc` into its
//! own target directory (`<target>/malloc-preload`), without the outer
//! build's `RUSTFLAGS`: a sanitizer build's runtime cannot be preloaded
//! into programs built without it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The directory of the programs' sources.
fn sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs")
}

/// The cargo target directory this test runs from (the first ancestor of
/// the test binary holding cargo's `CACHEDIR.TAG`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .find(|d| d.join("CACHEDIR.TAG").exists())
        .expect("test binary inside a cargo target directory")
        .to_path_buf()
}

/// A scratch directory for this test binary's files.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = target_dir().join("malloc-preload/scratch");
        std::fs::create_dir_all(&d).expect("scratch directory");
        d
    })
}

/// `libkmem_malloc.so`, built once per test binary.
fn library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = target_dir().join("malloc-preload");
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "kmem-malloc", "--target-dir"])
            .arg(&dir)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .status()
            .expect("cargo build -p kmem-malloc");
        assert!(status.success(), "cargo build -p kmem-malloc failed");
        let so = dir.join("debug/libkmem_malloc.so");
        assert!(so.exists(), "{} not built", so.display());
        so
    })
}

/// The path of `program`, found on `PATH` (`/usr/bin` first, ahead of
/// version-manager shims); a missing one fails the test with the package
/// that has it.
fn tool(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    core::iter::once(PathBuf::from("/usr/bin"))
        .chain(std::env::split_paths(&path))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{program}` is not installed: `apt-get install -y {package}` (.ci/run does)")
        })
}

/// Runs `cmd`, with kmem's malloc preloaded if `kmem`, its standard input
/// from `input` if given.
fn run(cmd: &mut Command, kmem: bool, input: Option<&Path>) -> Output {
    if kmem {
        cmd.env("LD_PRELOAD", library());
    } else {
        cmd.env_remove("LD_PRELOAD");
    }
    cmd.env_remove("KMEM_DEBUG");
    if let Some(f) = input {
        cmd.stdin(std::fs::File::open(f).expect("input file"));
    } else {
        cmd.stdin(Stdio::null());
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs the command `make()` builds under glibc and under kmem, and
/// asserts both succeed with the same standard output, and kmem's run
/// reports nothing. Returns that output.
#[track_caller]
fn same_output(make: impl Fn() -> Command, input: Option<&Path>) -> Vec<u8> {
    let glibc = run(&mut make(), false, input);
    let kmem = run(&mut make(), true, input);
    let show = |o: &Output| {
        format!(
            "status {}, stdout {:?}..., stderr {}",
            o.status,
            String::from_utf8_lossy(&o.stdout[..o.stdout.len().min(200)]),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(glibc.status.success(), "under glibc: {}", show(&glibc));
    assert!(kmem.status.success(), "under kmem: {}", show(&kmem));
    assert!(
        glibc.stdout == kmem.stdout,
        "outputs differ:\nglibc: {}\nkmem: {}",
        show(&glibc),
        show(&kmem)
    );
    assert!(
        !String::from_utf8_lossy(&kmem.stderr).contains("kmem-malloc"),
        "kmem reported: {}",
        show(&kmem)
    );
    assert!(!kmem.stdout.is_empty(), "no output");
    kmem.stdout
}

/// Compiles the C or C++ source `name` with `compiler` (without kmem) and
/// the `extra` flags into the scratch directory.
fn build(compiler: &str, package: &str, name: &str, extra: &[&str]) -> PathBuf {
    // One binary per source and flags: tests build concurrently.
    let flags = extra.iter().fold(0u64, |h, f| {
        f.bytes().fold(h ^ 0xff, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    });
    let out = scratch().join(format!("{}-{flags:x}", name.replace('.', "_")));
    let status = Command::new(tool(compiler, package))
        .args(["-O2", "-Wall", "-Wno-alloc-size-larger-than", "-o"])
        .arg(&out)
        .arg(sources().join(name))
        .args(extra)
        .status()
        .expect("compiler");
    assert!(status.success(), "{compiler} {name} failed");
    out
}

/// The file `lines.pl` prints for `lines` (the input of sort, gzip and
/// xz, shared with `cargo xtask bench --malloc`).
fn data_file(name: &str, lines: usize) -> PathBuf {
    let path = scratch().join(name);
    let out = Command::new(tool("perl", "perl"))
        .arg(sources().join("lines.pl"))
        .arg(lines.to_string())
        .output()
        .expect("perl lines.pl");
    assert!(out.status.success(), "lines.pl failed");
    std::fs::write(&path, out.stdout).expect("data file");
    path
}

#[test]
fn python_runs_an_object_heavy_script() {
    let py = tool("python3", "python3");
    same_output(
        || {
            let mut c = Command::new(&py);
            c.arg(sources().join("objects.py"));
            c
        },
        None,
    );
}

#[test]
fn perl_runs_hashes_and_regexes() {
    let perl = tool("perl", "perl");
    same_output(
        || {
            let mut c = Command::new(&perl);
            c.arg(sources().join("hashes.pl"));
            c
        },
        None,
    );
}

#[test]
fn sqlite_builds_and_queries_a_database() {
    let sqlite = tool("sqlite3", "sqlite3");
    let script = format!(".read {}", sources().join("people.sql").display());
    let run_one = |kmem: bool| {
        let db = scratch().join(format!("people-{kmem}.db"));
        let _ = std::fs::remove_file(&db);
        let mut c = Command::new(&sqlite);
        c.arg(&db).arg(&script);
        let o = run(&mut c, kmem, None);
        assert!(
            o.status.success(),
            "sqlite3 (kmem: {kmem}): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    };
    let (glibc, kmem) = (run_one(false), run_one(true));
    assert_eq!(
        String::from_utf8_lossy(&glibc),
        String::from_utf8_lossy(&kmem)
    );
    assert_eq!(glibc.iter().filter(|&&b| b == b'\n').count(), 11);
}

#[test]
fn sort_gzip_and_xz_process_generated_data() {
    let data = data_file("lines.txt", 200_000);
    let sort = tool("sort", "coreutils");
    let sorted = same_output(
        || {
            let mut c = Command::new(&sort);
            c.args(["-k2,2", "-k1,1n"]).arg(&data);
            c
        },
        None,
    );
    assert_eq!(
        sorted.len(),
        std::fs::metadata(&data).unwrap().len() as usize
    );
    for (program, package) in [("gzip", "gzip"), ("xz", "xz-utils")] {
        let path = tool(program, package);
        let packed = same_output(
            || {
                let mut c = Command::new(&path);
                c.args(["-c", "-6"]);
                c
            },
            Some(&data),
        );
        let file = scratch().join(format!("lines.{program}"));
        std::fs::write(&file, &packed).unwrap();
        let unpacked = same_output(
            || {
                let mut c = Command::new(&path);
                c.args(["-d", "-c"]);
                c
            },
            Some(&file),
        );
        assert!(
            unpacked == std::fs::read(&data).unwrap(),
            "{program} round trip"
        );
    }
}

#[test]
fn gxx_compiles_a_cpp_file_and_its_program_runs() {
    let gxx = tool("g++", "g++");
    // g++ itself under kmem: the compile succeeds and the program it makes
    // prints what the one built under glibc prints.
    let out = scratch().join("templates_kmem");
    let mut c = Command::new(&gxx);
    c.args(["-O2", "-std=c++17", "-o"])
        .arg(&out)
        .arg(sources().join("templates.cpp"));
    let o = run(&mut c, true, None);
    assert!(
        o.status.success(),
        "g++ under kmem: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let reference = build("g++", "g++", "templates.cpp", &["-std=c++17"]);
    let a = same_output(|| Command::new(&reference), None);
    let b = same_output(|| Command::new(&out), None);
    assert_eq!(a, b);
}

#[test]
fn cpp_static_constructors_and_the_dynamic_loader_allocate() {
    let bin = build("g++", "g++", "statics.cpp", &["-std=c++17", "-ldl"]);
    let out = same_output(|| Command::new(&bin), None);
    assert_eq!(String::from_utf8_lossy(&out), "289000 three 0 1 1 1 2000\n");
}

#[test]
fn a_multithreaded_c_program_with_fork() {
    let bin = build("gcc", "gcc", "threads.c", &["-pthread"]);
    let out = same_output(|| Command::new(&bin), None);
    assert_eq!(
        String::from_utf8_lossy(&out)
            .trim()
            .parse::<u64>()
            .map(|n| n > 0),
        Ok(true)
    );
    // Every thread gave its CPU slot back when it exited (808 threads
    // against 126 exclusive slots or more), and the bootstrap area served
    // only the boot's own allocations and the reaper thread's first.
    let mut c = Command::new(&bin);
    c.env("KMEM_MALLOC_STATS", "1");
    let o = run(&mut c, true, None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    // (The reaper thread, alive to the end, may own one.)
    assert!(
        err.contains("CPU slots: 0 of ") || err.contains("CPU slots: 1 of "),
        "{err}"
    );
    let handed: usize = err
        .split("bytes carved; ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no bootstrap line: {err}"));
    assert!(handed <= 4, "{handed} bootstrap blocks: {err}");
}

#[test]
fn the_c_entry_points_behave_as_glibcs() {
    let bin = build("gcc", "gcc", "api.c", &[]);
    let out = same_output(|| Command::new(&bin), None);
    assert_eq!(String::from_utf8_lossy(&out), "ok\n");
}

#[test]
fn limits_match_glibcs_and_no_thread_is_added() {
    let bin = build("gcc", "gcc", "limits.c", &[]);
    let out = same_output(|| Command::new(&bin), None);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("threads 1\n"), "{text}");
    assert!(text.ends_with("done\n"), "{text}");
}

#[test]
fn the_reaper_starts_only_past_its_threshold() {
    let bin = build("gcc", "gcc", "reaper.c", &[]);
    let o = run(&mut Command::new(&bin), true, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // One thread below 64 MiB of spans, the reaper beside it past them.
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1 2\n");
}

#[test]
fn a_program_boots_under_an_address_space_limit() {
    // 600 MB of address space for the whole program: kmalloc's
    // reservations (metadata, the page map, spans) must fit in it.
    let py = tool("python3", "python3");
    let script = "x = [bytes(1000) for i in range(20000)]; print(len(x), sum(map(len, x)))";
    same_output(
        || {
            let mut c = Command::new(&py);
            c.args(["-c", script]);
            limit_address_space(&mut c, 600_000 << 10);
            c
        },
        None,
    );
}

#[test]
fn the_static_library_links_into_a_c_program() {
    let lib = library().with_extension("a");
    let bin = build(
        "gcc",
        "gcc",
        "api.c",
        &[
            lib.to_str().expect("a UTF-8 path"),
            "-lpthread",
            "-ldl",
            "-lm",
        ],
    );
    let out = Command::new(&bin)
        .env_remove("LD_PRELOAD")
        .env("KMEM_MALLOC_STATS", "1")
        .output()
        .expect("api.c, linked with libkmem_malloc.a");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    // kmem's malloc, not glibc's, served it.
    assert!(err.contains("kmem-malloc: bootstrap area"), "{err}");
}

#[test]
fn the_first_metadata_reservation_halves_to_fit() {
    // 48 MB of address space for a small C program: the first metadata
    // reservation (64 MiB) cannot fit, half of it can.
    let bin = build("gcc", "gcc", "bad.c", &["-w"]);
    let mut c = Command::new(&bin);
    c.arg("none")
        .env("LD_PRELOAD", library())
        .env("KMEM_MALLOC_STATS", "1");
    limit_address_space(&mut c, 48_000 << 10);
    let o = c.output().expect("bad.c");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    // The base arena's row of the report: name, in use, total.
    let total: usize = err
        .lines()
        .find_map(|l| l.strip_prefix("base "))
        .and_then(|r| r.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no base arena row: {err}"));
    assert!(
        total > 16 << 20 && total < 64 << 20,
        "base arena of {total} bytes: {err}"
    );
}

/// Runs `c`'s process with at most `bytes` of address space
/// (`RLIMIT_AS`).
fn limit_address_space(c: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the child only calls `setrlimit`,
    // which is async-signal-safe.
    unsafe {
        c.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    };
}

/// Runs `bad.c` in `mode` under kmem.
fn bad(mode: &str, debug: bool) -> Output {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    let bin = BIN.get_or_init(|| build("gcc", "gcc", "bad.c", &["-w"]));
    let mut c = Command::new(bin);
    c.arg(mode);
    let mut o = run(&mut c, true, None);
    if debug {
        let mut c = Command::new(bin);
        c.arg(mode)
            .env("LD_PRELOAD", library())
            .env("KMEM_DEBUG", "1");
        o = c.output().expect("bad.c");
    }
    o
}

#[test]
fn a_foreign_pointer_is_reported_and_left_alone() {
    let o = bad("foreign", false);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{}: {err}", o.status);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "survived\n");
    assert!(err.contains("not a block of this allocator"), "{err}");
}

#[test]
fn double_and_interior_frees_stop_the_program() {
    use std::os::unix::process::ExitStatusExt;
    for (mode, debug, says) in [
        ("double", false, "double free"),
        ("interior", false, "not the start of an object"),
        ("large-interior", false, "unallocated"),
        ("realloc-freed", false, "double free"),
        ("double", true, "double free"),
    ] {
        let o = bad(mode, debug);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.signal(),
            Some(libc::SIGABRT),
            "{mode} (debug {debug}): {err}"
        );
        assert!(o.stdout.is_empty(), "{mode}: the program went on");
        assert!(
            err.to_lowercase().contains(says),
            "{mode} (debug {debug}): {err}"
        );
        // Debug mode's audit names the C caller of `free` and `malloc`.
        if debug {
            assert!(
                err.contains("this call:\n    0x") && err.contains(" in main\n"),
                "{err}"
            );
        }
    }
}
