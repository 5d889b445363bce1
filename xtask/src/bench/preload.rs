//! `cargo xtask bench --malloc`: B15, programs of the distribution with
//! each C malloc preloaded.
//!
//! 1. `cargo build --release -p kmem-malloc`: kmem's
//!    `target/release/libkmem_malloc.so`.
//! 2. mimalloc: the distribution's `libmimalloc.so.2` if it is installed,
//!    else one built with `gcc -O2 -shared` from the sources the
//!    `libmimalloc-sys` crate vendors (the mimalloc the Rust peers use),
//!    with `MI_MALLOC_OVERRIDE`, into `$CARGO_TARGET_DIR/malloc-bench`.
//! 3. The inputs: `lines.pl`'s lines (the sort, gzip and xz input), the
//!    C program `threads.c`, built with gcc, and `templates.cpp`
//!    preprocessed for g++'s `cc1plus`; the sources are kmem-malloc's
//!    test programs (`crates/malloc/tests/programs`), here at a larger
//!    scale.
//! 4. Each workload with glibc's malloc (nothing preloaded), kmem's and
//!    mimalloc's (`LD_PRELOAD`), measured and reported as B11 is
//!    ([`whole`](super::whole)): `malloc.md` and `malloc.json`. A run's
//!    checksum is a hash of its standard output, which must not depend on
//!    the allocator. kmem's reaper thread is off under callgrind
//!    (`KMEM_UPKEEP_MS=0`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::whole::{cargo_target_dir, check, measure, select, Plan, Run, Workload};
use crate::flags::BenchOpts;
use crate::shell::{project_root, Cmd, Error, Result};

/// The allocators, glibc (the baseline) first.
const ALLOCATORS: [&str; 3] = ["glibc", "kmem", "mimalloc"];

/// Where the distribution keeps its mimalloc.
const DISTRO_MIMALLOC: &str = "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2";

/// Lines of `lines.pl` for sort, gzip and xz.
const LINES: usize = 600_000;

/// A workload: its name and the program and arguments it runs.
struct Job {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
}

/// Builds, runs, measures and reports.
pub(crate) fn run(opts: &BenchOpts) -> Result {
    let start = Instant::now();
    let work = cargo_target_dir()?.join("malloc-bench");
    std::fs::create_dir_all(&work)
        .map_err(|e| Error::new(format!("creating {}: {e}", work.display())))?;
    Cmd::cargo()
        .args(["build", "--release", "-p", "kmem-malloc"])
        .run()?;
    let kmem = cargo_target_dir()?.join("release/libkmem_malloc.so");
    let mimalloc = mimalloc(&work)?;
    let jobs = select(jobs(&work)?, &opts.extra, |j| j.name)?;
    let preload = [None, Some(kmem.clone()), Some(mimalloc.clone())];
    let job_of = |w: &Workload| {
        jobs.iter()
            .find(|j| j.name == w.name)
            .expect("a workload of the plan")
    };
    let make = |w: &Workload, a: usize| {
        let job = job_of(w);
        let args: Vec<&str> = job.args.iter().map(String::as_str).collect();
        let run = Run::new(&job.program, &args);
        match &preload[a] {
            Some(lib) => run.env("LD_PRELOAD", lib),
            None => run,
        }
    };
    let counted = |w: &Workload, a: usize| make(w, a).env("KMEM_UPKEEP_MS", "0");
    let plan = Plan {
        benchmark: "B15",
        stem: "malloc",
        allocators: &ALLOCATORS,
        workloads: jobs
            .iter()
            .map(|j| Workload {
                name: j.name.to_owned(),
                scale: 1,
                valgrind_scale: 1,
            })
            .collect(),
        timed: &make,
        counted: &counted,
        checksum: |out| Some(format!("{:016x}", fnv1a(out))),
        footnote: format!(
            "The same commands under callgrind, kmem's reaper thread off (KMEM_UPKEEP_MS=0). \
             kmem: {}; mimalloc: {}.",
            kmem.display(),
            mimalloc.display()
        ),
    };
    measure(&plan, opts, start)
}

/// The workloads, their inputs built into `work`.
fn jobs(work: &Path) -> Result<Vec<Job>> {
    let src = project_root().join("crates/malloc/tests/programs");
    let src_arg = |name: &str| src.join(name).display().to_string();
    let lines = work.join("lines.txt");
    let cmd = Cmd::new("perl")
        .arg(src.join("lines.pl"))
        .arg(LINES.to_string());
    let out = cmd.output_quiet()?;
    check(&cmd, &out)?;
    std::fs::write(&lines, &out.stdout)
        .map_err(|e| Error::new(format!("writing {}: {e}", lines.display())))?;
    let lines = lines.display().to_string();
    let threads = work.join("threads");
    Cmd::new("gcc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&threads)
        .arg(src.join("threads.c"))
        .run()?;
    // g++'s compiler proper on the preprocessed file: one process, whose
    // instructions callgrind counts (the `g++` driver's would be only its
    // own).
    let cc1plus = Cmd::new("g++").arg("-print-prog-name=cc1plus");
    let out = cc1plus.output_quiet()?;
    check(&cc1plus, &out)?;
    let cc1plus = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let preprocessed = work.join("templates.ii");
    Cmd::new("g++")
        .args(["-std=c++17", "-E", "-o"])
        .arg(&preprocessed)
        .arg(src.join("templates.cpp"))
        .run()?;
    let preprocessed = preprocessed.display().to_string();
    let tool = |name: &str| PathBuf::from(format!("/usr/bin/{name}"));
    let job = |name, program, args: &[&str]| Job {
        name,
        program,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
    };
    Ok(vec![
        job("python", tool("python3"), &[&src_arg("objects.py")]),
        job("perl", tool("perl"), &[&src_arg("hashes.pl")]),
        job(
            "sqlite",
            tool("sqlite3"),
            &[":memory:", &format!(".read {}", src_arg("people.sql"))],
        ),
        job("sort", tool("sort"), &["-k2,2", "-k1,1n", &lines]),
        job("gzip", tool("gzip"), &["-c", "-6", &lines]),
        job("xz", tool("xz"), &["-c", "-6", "-T1", &lines]),
        job(
            "g++",
            cc1plus,
            &[
                "-quiet",
                "-O2",
                "-std=c++17",
                "-fpreprocessed",
                &preprocessed,
                "-o",
                "-",
            ],
        ),
        // `fixed`: the allocating threads' work does not depend on how
        // long the forks take, so the instruction counts compare.
        job("threads", threads, &["fixed"]),
    ])
}

/// The mimalloc to preload: the distribution's, else one built from the
/// `libmimalloc-sys` crate's sources into `work`.
fn mimalloc(work: &Path) -> Result<PathBuf> {
    if Path::new(DISTRO_MIMALLOC).is_file() {
        return Ok(DISTRO_MIMALLOC.into());
    }
    let lib = work.join("libmimalloc.so");
    if lib.is_file() {
        return Ok(lib);
    }
    let cmd = Cmd::cargo().args(["metadata", "--format-version", "1"]);
    let out = cmd.output_quiet()?;
    check(&cmd, &out)?;
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| Error::new(format!("`{cmd}`: {e}")))?;
    let manifest = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "libmimalloc-sys")
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or_else(|| Error::new("no libmimalloc-sys package in `cargo metadata`"))?;
    let crate_dir = Path::new(manifest).parent().unwrap_or(Path::new("."));
    let c_src = ["c_src/mimalloc/v3", "c_src/mimalloc"]
        .iter()
        .map(|d| crate_dir.join(d))
        .find(|d| d.join("src/static.c").is_file())
        .ok_or_else(|| Error::new(format!("no mimalloc sources under {}", crate_dir.display())))?;
    Cmd::new("gcc")
        .args([
            "-O2",
            "-DNDEBUG",
            "-DMI_MALLOC_OVERRIDE",
            "-fPIC",
            "-shared",
            "-I",
        ])
        .arg(c_src.join("include"))
        .arg(c_src.join("src/static.c"))
        .arg("-o")
        .arg(&lib)
        .arg("-lpthread")
        .run()?;
    Ok(lib)
}

/// FNV-1a, 64 bits: a run's output checksum.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
