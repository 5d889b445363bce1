//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/` (harnesses in
//! `crates/fuzz`), each for a while, then how many inputs each ran and
//! whether it crashed.
//!
//! 1. Skips, saying why, without a nightly toolchain (`cargo +nightly
//!    --version`): libFuzzer builds need `-Zsanitizer=address`. rust-src is
//!    not needed (no `-Zbuild-std`).
//! 2. Installs cargo-fuzz (`cargo install cargo-fuzz --locked`) unless
//!    `cargo fuzz --version` works.
//! 3. For each target (all of [`TARGETS`] by default):
//!
//!    ```text
//!    RUSTFLAGS="--cfg kmem_asan" \
//!    cargo +nightly fuzz run <target> fuzz/target/corpus/<target> fuzz/corpus/<target> \
//!        -- -max_total_time=<seconds> -max_len=4096 -len_control=0 -print_final_stats=1
//!    ```
//!
//!    cargo-fuzz adds `-Zsanitizer=address` and its coverage flags to
//!    `RUSTFLAGS`; `--cfg kmem_asan` makes the arenas and caches poison the
//!    free parts of the fake memory they manage (see `cargo xtask
//!    sanitize`), so an access the allocator makes to memory it freed is
//!    reported, not only what the harnesses check. `-len_control=0` lets
//!    inputs be long (up to 256 actions) from the start: the deep states
//!    come from long sequences.
//!
//!    The committed seed corpus (`fuzz/corpus/<target>`) is read, never
//!    written: libFuzzer adds what it finds to the first folder, a scratch
//!    corpus under the ignored `fuzz/target`, kept between runs. A crashing
//!    input goes to `fuzz/artifacts/<target>/` (cargo-fuzz's default),
//!    where `cargo xtask test` replays it (`crates/fuzz/tests/corpus.rs`).
//! 4. Prints each target's executions (libFuzzer's final
//!    `stat::number_of_executed_units`, else its last `#N` status line) and
//!    its crash (the input written, the panic message), and fails if any
//!    target crashed. libFuzzer stops at the first crash, so a target has at
//!    most one.

use std::fs;

use crate::shell::{has_nightly, nightly, project_root, Cmd, Error, Result};

/// The targets, as named in `fuzz/Cargo.toml` and `kmem_fuzz::TARGETS`.
pub(crate) const TARGETS: [&str; 3] = ["arena", "caches", "kmalloc"];

/// Seconds per target when none are given.
pub(crate) const DEFAULT_SECONDS: u64 = 60;

/// libFuzzer's flags besides the time: inputs of up to 4096 bytes (the
/// harnesses use at most 256 actions, a few thousand bytes), long ones from
/// the start, and the final statistics the summary reads.
const LIBFUZZER_FLAGS: [&str; 3] = ["-max_len=4096", "-len_control=0", "-print_final_stats=1"];

/// The cfg that turns on the allocator's AddressSanitizer annotations.
const KMEM_ASAN: &str = "--cfg kmem_asan";

/// How libFuzzer says where it saved a crashing input (after
/// `artifact_prefix='...'; ` on the same line).
const WRITTEN: &str = "Test unit written to ";

/// What one target's run came to.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    /// Inputs run, if the log says.
    executions: Option<u64>,
    /// The crashing input libFuzzer wrote, if any.
    artifact: Option<String>,
    /// The panic message (or sanitizer summary) of the crash.
    reason: Option<String>,
}

impl Outcome {
    fn crashed(&self) -> bool {
        self.artifact.is_some() || self.reason.is_some()
    }
}

/// Runs every target in `targets` (all of them if empty) for `seconds`
/// each, then prints the summary; fails if a target crashed.
pub(crate) fn run(seconds: u64, targets: &[String]) -> Result {
    let targets: Vec<&str> = if targets.is_empty() {
        TARGETS.to_vec()
    } else {
        targets.iter().map(String::as_str).collect()
    };
    if let Some(bad) = targets.iter().find(|t| !TARGETS.contains(t)) {
        return Err(Error::new(format!(
            "unknown fuzz target `{bad}` (targets: {})",
            TARGETS.join(", ")
        )));
    }
    if !has_nightly() {
        eprintln!(
            "xtask fuzz: skipped: `cargo +nightly --version` failed. cargo-fuzz builds with \
             -Zsanitizer=address, which needs a nightly toolchain \
             (`rustup toolchain install nightly`)."
        );
        return Ok(());
    }
    if Cmd::cargo().args(["fuzz", "--version"]).probe().is_none() {
        Cmd::cargo()
            .args(["install", "cargo-fuzz", "--locked"])
            .run()?;
    }
    let mut outcomes = Vec::new();
    for target in &targets {
        outcomes.push((*target, fuzz_target(target, seconds)?));
    }
    println!();
    println!("fuzz summary ({seconds} s per target):");
    for (target, o) in &outcomes {
        println!("  {}", summary_line(target, o));
    }
    let crashed: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| o.crashed())
        .map(|(t, _)| *t)
        .collect();
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "fuzz targets crashed: {}; reproduce with `cargo +nightly fuzz run <target> <input>`",
            crashed.join(", ")
        )))
    }
}

/// Fuzzes `target` for `seconds` and reads the outcome from its log.
fn fuzz_target(target: &str, seconds: u64) -> Result<Outcome> {
    let root = project_root();
    let scratch = root.join("fuzz/target/corpus").join(target);
    let seeds = root.join("fuzz/corpus").join(target);
    fs::create_dir_all(&scratch)
        .map_err(|e| Error::new(format!("creating {}: {e}", scratch.display())))?;
    eprintln!("xtask fuzz: {target} for {seconds} s (libFuzzer's log follows when it ends)");
    let cmd = nightly()
        .args(["fuzz", "run", target])
        .arg(&scratch)
        .args(Some(&seeds).filter(|p| p.is_dir()))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args(LIBFUZZER_FLAGS)
        .env("RUSTFLAGS", rustflags());
    // Build failures and crashes both exit non-zero; the log tells which.
    let out = cmd.output()?;
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    eprint!("{}", tail(&log, 40));
    let outcome = parse(&log);
    if !out.status.success() && !outcome.crashed() {
        return Err(Error::new(format!(
            "`{cmd}` failed ({}) without a crash report; see its log above",
            out.status
        )));
    }
    Ok(outcome)
}

/// `RUSTFLAGS` from the environment, with [`KMEM_ASAN`] added.
fn rustflags() -> String {
    match std::env::var("RUSTFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} {KMEM_ASAN}"),
        _ => KMEM_ASAN.to_owned(),
    }
}

/// The last `n` lines of `log`.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let mut s = lines[lines.len().saturating_sub(n)..].join("\n");
    s.push('\n');
    s
}

/// Reads executions and the crash, if any, from a libFuzzer log.
fn parse(log: &str) -> Outcome {
    let mut o = Outcome::default();
    let mut status = None;
    let mut lines = log.lines().peekable();
    while let Some(line) = lines.next() {
        let line = line.trim();
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            o.executions = n.trim().parse().ok().or(o.executions);
        } else if let Some(n) = status_count(line) {
            status = Some(n);
        } else if let Some(at) = line.find(WRITTEN) {
            o.artifact = Some(line[at + WRITTEN.len()..].trim().to_owned());
        } else if line.contains("panicked at") && o.reason.is_none() {
            // The message is on the next line (Rust 1.73 and later).
            let msg = lines.peek().map_or("", |m| m.trim());
            o.reason = Some(format!("{line} {msg}").trim().to_owned());
        } else if let Some(s) = line.strip_prefix("SUMMARY: ") {
            o.reason.get_or_insert_with(|| s.to_owned());
        }
    }
    if o.executions.is_none() {
        o.executions = status;
    }
    o
}

/// The input count of a libFuzzer status line (`#1234\tNEW ...`,
/// `#5678\tDONE ...`, `#2\tINITED ...`).
fn status_count(line: &str) -> Option<u64> {
    let rest = line.strip_prefix('#')?;
    let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    let after = rest[digits.len()..].chars().next()?;
    if digits.is_empty() || !after.is_whitespace() {
        return None;
    }
    digits.parse().ok()
}

/// One line of the summary.
fn summary_line(target: &str, o: &Outcome) -> String {
    let runs = o
        .executions
        .map_or_else(|| "? executions".to_owned(), |n| format!("{n} executions"));
    if !o.crashed() {
        return format!("{target:<8} {runs}, 0 crashes");
    }
    let input = o.artifact.as_deref().unwrap_or("(no input written)");
    let reason = o.reason.as_deref().unwrap_or("see the log");
    format!("{target:<8} {runs}, 1 crash: {input}: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN: &str = "\
INFO: Seed: 3262116307
#2\tINITED cov: 1870 ft: 5200 corp: 32/1683b exec/s: 0 rss: 60Mb
#4096\tpulse  cov: 2000 ft: 6000 corp: 40/2Kb lim: 4096 exec/s: 2048 rss: 90Mb
#116191\tDONE   cov: 2606 ft: 10488 corp: 812/30Kb lim: 4096 exec/s: 1904 rss: 342Mb
Done 116191 runs in 61 second(s)
stat::number_of_executed_units: 116191
stat::average_exec_per_sec:     1904
stat::new_units_added:          812
";

    const CRASH: &str = "\
#1024\tpulse  cov: 1500 ft: 3000 corp: 20/1Kb lim: 4096 exec/s: 512 rss: 80Mb
#1500\tNEW    cov: 1501 ft: 3001 corp: 21/1Kb lim: 4096 exec/s: 500 rss: 80Mb L: 9/40 MS: 1 ChangeBit-
thread '<unnamed>' (29013) panicked at crates/fuzz/src/arena/actions.rs:667:17:
attempt to add with overflow
==29013== ERROR: libFuzzer: deadly signal
MS: 2 ChangeByte-CopyPart-; base unit: 0123
artifact_prefix='/work/main/fuzz/artifacts/arena/'; Test unit written to /work/main/fuzz/artifacts/arena/crash-cdbb
Base64: AAEC
stat::number_of_executed_units: 1517
stat::average_exec_per_sec:     505
SUMMARY: libFuzzer: deadly signal
";

    #[test]
    fn clean_run() {
        let o = parse(CLEAN);
        assert_eq!(o.executions, Some(116_191));
        assert!(!o.crashed());
        assert_eq!(
            summary_line("arena", &o),
            "arena    116191 executions, 0 crashes"
        );
    }

    #[test]
    fn crash_with_panic_message_and_artifact() {
        let o = parse(CRASH);
        assert_eq!(o.executions, Some(1517));
        assert_eq!(
            o.artifact.as_deref(),
            Some("/work/main/fuzz/artifacts/arena/crash-cdbb")
        );
        assert_eq!(
            o.reason.as_deref(),
            Some(
                "thread '<unnamed>' (29013) panicked at crates/fuzz/src/arena/actions.rs:667:17: \
                 attempt to add with overflow"
            )
        );
        assert!(summary_line("arena", &o).contains("1 crash: /work/main/fuzz/artifacts"));
    }

    #[test]
    fn executions_fall_back_to_the_last_status_line() {
        let log = "#2\tINITED cov: 1\n#300\tNEW    cov: 2\n#512\tpulse  cov: 2\n";
        assert_eq!(parse(log).executions, Some(512));
        assert_eq!(parse("no libFuzzer here\n").executions, None);
    }

    #[test]
    fn status_lines_only() {
        assert_eq!(status_count("#77\tDONE   cov: 3"), Some(77));
        assert_eq!(status_count("#2 INITED"), Some(2));
        assert_eq!(status_count("#x\tDONE"), None);
        assert_eq!(status_count("#12abc"), None);
        assert_eq!(status_count("# 12"), None);
        assert_eq!(status_count("#123"), None);
    }

    #[test]
    fn sanitizer_summary_is_a_crash() {
        let log = "==1==ERROR: AddressSanitizer: heap-use-after-free\n\
                   SUMMARY: AddressSanitizer: heap-use-after-free src/x.rs:1\n";
        let o = parse(log);
        assert!(o.crashed());
        assert_eq!(
            o.reason.as_deref(),
            Some("AddressSanitizer: heap-use-after-free src/x.rs:1")
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\n", 5), "a\n");
    }
}
