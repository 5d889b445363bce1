//! Command-line parsing: turns `cargo xtask <command> [flags]` into a [`Task`].
//!
//! Hand-rolled on purpose (no `clap`/`xflags`) to keep the task runner free of
//! dependencies.

use core::fmt;

/// What `cargo xtask` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Task {
    /// Print the usage.
    Help,
    /// Run the test suite, then the no_std checks.
    Test(TestOpts),
    /// Formatting and clippy checks.
    Lint,
    /// The no_std builds and the freestanding program.
    Nostd,
    /// The demo: the whole stack over fake physical memory, two threads.
    Demo,
    /// The multi-threaded stress binary.
    Stress(StressOpts),
    /// The test suite and the stress binary under the sanitizers.
    Sanitize,
    /// The cargo-fuzz targets in fuzz/.
    Fuzz(FuzzOpts),
    /// The loom models of the magazine layer.
    Loom(LoomOpts),
    /// Benchmarks.
    Bench(BenchOpts),
}

/// Flags of `cargo xtask test`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TestOpts {
    /// Build and run the tests with `--release`.
    pub(crate) release: bool,
    /// Run the randomized tests ten times longer (`KMEM_TEST_SCALE=10`).
    pub(crate) long: bool,
}

/// Flags of `cargo xtask loom`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct LoomOpts {
    /// `LOOM_MAX_PREEMPTIONS` for every model (each model's own bound if
    /// unset).
    pub(crate) preemptions: Option<usize>,
    /// Extra arguments for the test binary (everything after `--`).
    pub(crate) extra: Vec<String>,
}

/// Flags of `cargo xtask stress`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StressOpts {
    /// Worker threads.
    pub(crate) threads: usize,
    /// Operations per thread.
    pub(crate) ops: u64,
    /// Seed of every thread's generator.
    pub(crate) seed: u64,
    /// Runs the big-heap program instead, up to this many GiB live.
    pub(crate) big_heap: Option<u64>,
}

impl Default for StressOpts {
    fn default() -> Self {
        Self {
            threads: 4,
            ops: 1_000_000,
            seed: 1,
            big_heap: None,
        }
    }
}

/// Flags of `cargo xtask fuzz`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FuzzOpts {
    /// Seconds per target.
    pub(crate) seconds: u64,
    /// Targets to run (all when empty).
    pub(crate) targets: Vec<String>,
}

impl Default for FuzzOpts {
    fn default() -> Self {
        Self {
            seconds: crate::fuzz::DEFAULT_SECONDS,
            targets: Vec::new(),
        }
    }
}

/// Flags of `cargo xtask bench`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct BenchOpts {
    /// The suite's long mode, then every criterion bench with its default
    /// windows.
    pub(crate) full: bool,
    /// Also run the criterion benches (quick windows) after the suite.
    pub(crate) criterion: bool,
    /// Instead of the suite: B11, the real programs (`benches/programs`)
    /// with each global allocator.
    pub(crate) programs: bool,
    /// Where the suite writes its JSON records.
    pub(crate) json: Option<String>,
    /// Where the suite writes its markdown report and charts.
    pub(crate) report: Option<String>,
    /// Extra arguments for the suite (everything after `--`: filters,
    /// `--threads`), or with `programs`, the workloads to run.
    pub(crate) extra: Vec<String>,
}

/// A command line that names no known command or flag.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UsageError(String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses the arguments that follow `cargo xtask`.
pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Task, UsageError> {
    let mut args = args.into_iter();
    let Some(command) = args.next() else {
        return Ok(Task::Help);
    };
    let rest: Vec<String> = args.collect();
    match command.as_str() {
        "help" | "-h" | "--help" => no_flags(&command, &rest).map(|()| Task::Help),
        "lint" => no_flags(&command, &rest).map(|()| Task::Lint),
        "nostd" => no_flags(&command, &rest).map(|()| Task::Nostd),
        "demo" => no_flags(&command, &rest).map(|()| Task::Demo),
        "sanitize" => no_flags(&command, &rest).map(|()| Task::Sanitize),
        "fuzz" => {
            let mut opts = FuzzOpts::default();
            let mut rest = rest.into_iter();
            while let Some(arg) = rest.next() {
                match arg.as_str() {
                    "--seconds" => {
                        opts.seconds = rest
                            .next()
                            .and_then(|n| n.parse().ok())
                            .filter(|&n| n > 0)
                            .ok_or_else(|| {
                                UsageError("`fuzz --seconds` needs a positive number".into())
                            })?;
                    }
                    _ if arg.starts_with('-') => return Err(unknown_flag(&command, &arg)),
                    _ => opts.targets.push(arg),
                }
            }
            Ok(Task::Fuzz(opts))
        }
        "stress" => {
            let mut opts = StressOpts::default();
            let mut rest = rest.iter();
            while let Some(arg) = rest.next() {
                let mut value = |name: &str| -> Result<u64, UsageError> {
                    rest.next()
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| UsageError(format!("`stress {name}` needs a number")))
                };
                match arg.as_str() {
                    "--threads" => opts.threads = value("--threads")?.max(1) as usize,
                    "--ops" => opts.ops = value("--ops")?,
                    "--seed" => opts.seed = value("--seed")?,
                    "--big-heap" => opts.big_heap = Some(opts.big_heap.unwrap_or(6)),
                    "--gib" => opts.big_heap = Some(value("--gib")?.max(1)),
                    _ => return Err(unknown_flag(&command, arg)),
                }
            }
            Ok(Task::Stress(opts))
        }
        "test" => {
            let mut opts = TestOpts::default();
            for arg in &rest {
                match arg.as_str() {
                    "--release" => opts.release = true,
                    "--long" => opts.long = true,
                    _ => return Err(unknown_flag(&command, arg)),
                }
            }
            Ok(Task::Test(opts))
        }
        "loom" => {
            let mut opts = LoomOpts::default();
            let mut rest = rest.into_iter();
            while let Some(arg) = rest.next() {
                match arg.as_str() {
                    "--preemptions" => {
                        let n = rest.next().and_then(|n| n.parse().ok()).ok_or_else(|| {
                            UsageError("`loom --preemptions` needs a number".into())
                        })?;
                        opts.preemptions = Some(n);
                    }
                    "--" => opts.extra = rest.by_ref().collect(),
                    _ => return Err(unknown_flag(&command, &arg)),
                }
            }
            Ok(Task::Loom(opts))
        }
        "bench" => {
            let mut opts = BenchOpts::default();
            let mut rest = rest.into_iter();
            while let Some(arg) = rest.next() {
                let mut value = |name: &str| {
                    rest.next()
                        .ok_or_else(|| UsageError(format!("`bench {name}` needs a value")))
                };
                match arg.as_str() {
                    "--full" => opts.full = true,
                    "--criterion" => opts.criterion = true,
                    "--programs" => opts.programs = true,
                    "--json" => opts.json = Some(value("--json")?),
                    "--report" => opts.report = Some(value("--report")?),
                    "--" => {
                        opts.extra = rest.by_ref().collect();
                    }
                    _ => return Err(unknown_flag(&command, &arg)),
                }
            }
            if opts.programs && opts.criterion {
                return Err(UsageError(
                    "`bench --programs` runs the programs only: drop `--criterion`".into(),
                ));
            }
            Ok(Task::Bench(opts))
        }
        _ => Err(UsageError(format!("unknown command `{command}`"))),
    }
}

fn no_flags(command: &str, rest: &[String]) -> Result<(), UsageError> {
    match rest.first() {
        None => Ok(()),
        Some(arg) => Err(unknown_flag(command, arg)),
    }
}

fn unknown_flag(command: &str, arg: &str) -> UsageError {
    UsageError(format!("`{command}` does not take `{arg}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Task, UsageError> {
        parse(line.split_whitespace().map(String::from))
    }

    #[test]
    fn no_arguments_is_help() {
        assert_eq!(parse_str(""), Ok(Task::Help));
        assert_eq!(parse_str("help"), Ok(Task::Help));
        assert_eq!(parse_str("--help"), Ok(Task::Help));
    }

    #[test]
    fn test_flags() {
        assert_eq!(parse_str("test"), Ok(Task::Test(TestOpts::default())));
        assert_eq!(
            parse_str("test --long --release"),
            Ok(Task::Test(TestOpts {
                release: true,
                long: true
            }))
        );
        assert!(parse_str("test --fast").is_err());
    }

    #[test]
    fn bench_flags_and_passthrough() {
        assert_eq!(
            parse_str("bench --full --json r.json --report out -- B5 --threads 1,2"),
            Ok(Task::Bench(BenchOpts {
                full: true,
                criterion: false,
                programs: false,
                json: Some("r.json".into()),
                report: Some("out".into()),
                extra: vec!["B5".into(), "--threads".into(), "1,2".into()],
            }))
        );
        assert_eq!(
            parse_str("bench --criterion"),
            Ok(Task::Bench(BenchOpts {
                criterion: true,
                ..BenchOpts::default()
            }))
        );
        assert!(parse_str("bench arena").is_err());
        assert!(parse_str("bench --json").is_err());
    }

    #[test]
    fn bench_programs_flags() {
        assert_eq!(
            parse_str("bench --programs"),
            Ok(Task::Bench(BenchOpts {
                programs: true,
                ..BenchOpts::default()
            }))
        );
        assert_eq!(
            parse_str("bench --programs --full --report out -- json syn"),
            Ok(Task::Bench(BenchOpts {
                programs: true,
                full: true,
                report: Some("out".into()),
                extra: vec!["json".into(), "syn".into()],
                ..BenchOpts::default()
            }))
        );
        assert!(parse_str("bench --programs --criterion").is_err());
        assert!(parse_str("bench --programs json").is_err());
    }

    #[test]
    fn loom_flags_and_passthrough() {
        assert_eq!(parse_str("loom"), Ok(Task::Loom(LoomOpts::default())));
        assert_eq!(
            parse_str("loom --preemptions 3 -- depot_exchange --exact"),
            Ok(Task::Loom(LoomOpts {
                preemptions: Some(3),
                extra: vec!["depot_exchange".into(), "--exact".into()],
            }))
        );
        assert!(parse_str("loom --preemptions").is_err());
        assert!(parse_str("loom --preemptions many").is_err());
        assert!(parse_str("loom depot_exchange").is_err());
    }

    #[test]
    fn fuzz_flags() {
        assert_eq!(parse_str("fuzz"), Ok(Task::Fuzz(FuzzOpts::default())));
        assert_eq!(
            parse_str("fuzz --seconds 5 arena kmalloc"),
            Ok(Task::Fuzz(FuzzOpts {
                seconds: 5,
                targets: vec!["arena".into(), "kmalloc".into()]
            }))
        );
        assert!(parse_str("fuzz --seconds").is_err());
        assert!(parse_str("fuzz --seconds 0").is_err());
        assert!(parse_str("fuzz --fast").is_err());
    }

    #[test]
    fn stress_flags() {
        assert_eq!(parse_str("stress"), Ok(Task::Stress(StressOpts::default())));
        assert_eq!(
            parse_str("stress --threads 8 --ops 5 --seed 9"),
            Ok(Task::Stress(StressOpts {
                threads: 8,
                ops: 5,
                seed: 9,
                big_heap: None,
            }))
        );
        let big = |gib| {
            Ok(Task::Stress(StressOpts {
                big_heap: Some(gib),
                ..StressOpts::default()
            }))
        };
        assert_eq!(parse_str("stress --big-heap"), big(6));
        assert_eq!(parse_str("stress --big-heap --gib 8"), big(8));
        assert_eq!(parse_str("stress --gib 2"), big(2));
        assert!(parse_str("stress --big-heap --gib").is_err());
        assert!(parse_str("stress --threads").is_err());
        assert!(parse_str("stress --ops many").is_err());
        assert!(parse_str("stress --fast").is_err());
    }

    #[test]
    fn commands_without_flags_reject_them() {
        assert_eq!(parse_str("lint"), Ok(Task::Lint));
        assert_eq!(parse_str("nostd"), Ok(Task::Nostd));
        assert_eq!(parse_str("demo"), Ok(Task::Demo));
        assert_eq!(parse_str("sanitize"), Ok(Task::Sanitize));
        assert!(parse_str("sanitize --thread").is_err());
        assert!(parse_str("demo --fast").is_err());
        assert!(parse_str("lint --fix").is_err());
        assert!(parse_str("frobnicate").is_err());
    }
}
