//! Command-line parsing: turns `cargo xtask <command> [flags]` into a [`Task`],
//! with [`lexopt`]: flags as `--flag value` or `--flag=value`, `--` ends the
//! flags (`loom` and `bench` pass what follows it on).

use core::fmt;
use std::ffi::OsString;

use lexopt::prelude::*;
use lexopt::Parser;

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
    /// Instead of the suite: B15, programs of the distribution with each C
    /// malloc preloaded (`LD_PRELOAD`).
    pub(crate) malloc: bool,
    /// Where the suite writes its JSON records.
    pub(crate) json: Option<String>,
    /// Where the suite writes its markdown report and charts.
    pub(crate) report: Option<String>,
    /// Extra arguments for the suite (everything after `--`: filters,
    /// `--threads`), or with `programs`, the workloads to run.
    pub(crate) extra: Vec<String>,
}

/// A command line that names no known command or flag, or a flag without
/// its value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UsageError(String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses the arguments that follow `cargo xtask`.
pub(crate) fn parse<I>(args: I) -> Result<Task, UsageError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut p = Parser::from_args(args);
    let command = match p.next() {
        Ok(None) => return Ok(Task::Help),
        Ok(Some(Short('h') | Long("help"))) => "help".to_owned(),
        Ok(Some(Value(command))) => command
            .string()
            .map_err(|e| UsageError(format!("unknown command: {e}")))?,
        Ok(Some(arg)) => return Err(UsageError(format!("unknown command: {}", arg.unexpected()))),
        Err(e) => return Err(UsageError(e.to_string())),
    };
    let task = match command.as_str() {
        "help" => no_flags(&mut p).map(|()| Task::Help),
        "lint" => no_flags(&mut p).map(|()| Task::Lint),
        "nostd" => no_flags(&mut p).map(|()| Task::Nostd),
        "demo" => no_flags(&mut p).map(|()| Task::Demo),
        "sanitize" => no_flags(&mut p).map(|()| Task::Sanitize),
        "test" => test(&mut p).map(Task::Test),
        "fuzz" => fuzz(&mut p).map(Task::Fuzz),
        "stress" => stress(&mut p).map(Task::Stress),
        "loom" => loom(&mut p).map(Task::Loom),
        "bench" => bench(&mut p).map(Task::Bench),
        _ => return Err(UsageError(format!("unknown command `{command}`"))),
    };
    task.map_err(|e| UsageError(format!("`{command}`: {e}")))
}

/// One of a command's arguments, owned (a parser's [`Arg`](lexopt::Arg) borrows the
/// parser) so that its handler can take a flag's value from the parser.
enum Flag {
    /// `--name`, without its dashes.
    Long(String),
    /// A plain argument.
    Value(OsString),
}

impl Flag {
    /// The name of a `--name` flag.
    fn long(&self) -> Option<&str> {
        match self {
            Flag::Long(name) => Some(name),
            Flag::Value(_) => None,
        }
    }
}

/// Reads a command's arguments into `O::default()`, each through
/// `handle`, which answers false for one the command does not take (then
/// refused as lexopt refuses it). With `rest`, a `--` ends them and what
/// follows it goes into the field `rest` picks.
fn read_flags<O: Default>(
    p: &mut Parser,
    rest: Option<fn(&mut O) -> &mut Vec<String>>,
    mut handle: impl FnMut(&mut O, &mut Parser, &Flag) -> Result<bool, lexopt::Error>,
) -> Result<O, lexopt::Error> {
    let mut opts = O::default();
    loop {
        if let Some(rest) = rest {
            if let Some(extra) = after_dashes(p)? {
                *rest(&mut opts) = extra;
                return Ok(opts);
            }
        }
        let flag = match p.next()? {
            None => return Ok(opts),
            Some(Long(name)) => Flag::Long(name.to_owned()),
            Some(Value(value)) => Flag::Value(value),
            Some(arg) => return Err(arg.unexpected()),
        };
        if !handle(&mut opts, p, &flag)? {
            return Err(match flag {
                Flag::Long(name) => Long(&name).unexpected(),
                Flag::Value(value) => Value(value).unexpected(),
            });
        }
    }
}

fn no_flags(p: &mut Parser) -> Result<(), lexopt::Error> {
    read_flags(p, None, |(), _, _| Ok(false))
}

fn test(p: &mut Parser) -> Result<TestOpts, lexopt::Error> {
    read_flags(p, None, |opts: &mut TestOpts, _, flag| {
        match flag.long() {
            Some("release") => opts.release = true,
            Some("long") => opts.long = true,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

fn fuzz(p: &mut Parser) -> Result<FuzzOpts, lexopt::Error> {
    read_flags(p, None, |opts: &mut FuzzOpts, p, flag| {
        match flag {
            Flag::Long(name) if name == "seconds" => {
                opts.seconds = p.value()?.parse()?;
                if opts.seconds == 0 {
                    return Err("`--seconds` needs a positive number".into());
                }
            }
            Flag::Value(target) => opts.targets.push(target.clone().string()?),
            Flag::Long(_) => return Ok(false),
        }
        Ok(true)
    })
}

fn stress(p: &mut Parser) -> Result<StressOpts, lexopt::Error> {
    read_flags(p, None, |opts: &mut StressOpts, p, flag| {
        match flag.long() {
            Some("threads") => opts.threads = p.value()?.parse::<usize>()?.max(1),
            Some("ops") => opts.ops = p.value()?.parse()?,
            Some("seed") => opts.seed = p.value()?.parse()?,
            Some("big-heap") => opts.big_heap = Some(opts.big_heap.unwrap_or(6)),
            Some("gib") => opts.big_heap = Some(p.value()?.parse::<u64>()?.max(1)),
            _ => return Ok(false),
        }
        Ok(true)
    })
}

fn loom(p: &mut Parser) -> Result<LoomOpts, lexopt::Error> {
    read_flags(p, Some(|o: &mut LoomOpts| &mut o.extra), |opts, p, flag| {
        match flag.long() {
            Some("preemptions") => opts.preemptions = Some(p.value()?.parse()?),
            _ => return Ok(false),
        }
        Ok(true)
    })
}

fn bench(p: &mut Parser) -> Result<BenchOpts, lexopt::Error> {
    let opts = read_flags(
        p,
        Some(|o: &mut BenchOpts| &mut o.extra),
        |opts, p, flag| {
            match flag.long() {
                Some("full") => opts.full = true,
                Some("criterion") => opts.criterion = true,
                Some("programs") => opts.programs = true,
                Some("malloc") => opts.malloc = true,
                Some("json") => opts.json = Some(p.value()?.string()?),
                Some("report") => opts.report = Some(p.value()?.string()?),
                _ => return Ok(false),
            }
            Ok(true)
        },
    )?;
    if opts.programs && opts.criterion {
        return Err("`--programs` runs the programs only: drop `--criterion`".into());
    }
    if opts.malloc && (opts.criterion || opts.programs) {
        return Err(
            "`--malloc` runs the preloaded programs only: drop `--criterion`, `--programs`".into(),
        );
    }
    Ok(opts)
}

/// At a `--` (not a flag's value): every argument after it. lexopt itself
/// would only turn what follows into plain values, which a command that
/// takes none could not tell from a stray argument before the `--`.
fn after_dashes(p: &mut Parser) -> Result<Option<Vec<String>>, lexopt::Error> {
    let Some(mut raw) = p.try_raw_args() else {
        return Ok(None);
    };
    if raw.next_if(|arg| arg == "--").is_none() {
        return Ok(None);
    }
    raw.map(ValueExt::string)
        .collect::<Result<_, _>>()
        .map(Some)
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
                malloc: false,
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
    fn bench_malloc_flags() {
        assert_eq!(
            parse_str("bench --malloc --full -- python sqlite"),
            Ok(Task::Bench(BenchOpts {
                malloc: true,
                full: true,
                extra: vec!["python".into(), "sqlite".into()],
                ..BenchOpts::default()
            }))
        );
        assert!(parse_str("bench --malloc --programs").is_err());
        assert!(parse_str("bench --malloc --criterion").is_err());
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

    #[test]
    fn values_after_equals_signs() {
        assert_eq!(
            parse_str("stress --threads=8 --ops=5 --seed=9 --gib=2"),
            Ok(Task::Stress(StressOpts {
                threads: 8,
                ops: 5,
                seed: 9,
                big_heap: Some(2),
            }))
        );
        assert_eq!(
            parse_str("bench --json=r.json --report=out"),
            Ok(Task::Bench(BenchOpts {
                json: Some("r.json".into()),
                report: Some("out".into()),
                ..BenchOpts::default()
            }))
        );
        assert_eq!(
            parse_str("loom --preemptions=2"),
            Ok(Task::Loom(LoomOpts {
                preemptions: Some(2),
                extra: Vec::new(),
            }))
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = |line| parse_str(line).unwrap_err().to_string();
        assert_eq!(err("frobnicate"), "unknown command `frobnicate`");
        assert_eq!(
            err("--frobnicate"),
            "unknown command: invalid option '--frobnicate'"
        );
        assert_eq!(err("lint --fix"), "`lint`: invalid option '--fix'");
        assert_eq!(err("help me"), "`help`: unexpected argument \"me\"");
        assert_eq!(err("test --fast"), "`test`: invalid option '--fast'");
        assert_eq!(
            err("test --release=yes"),
            "`test`: unexpected argument for option '--release': \"yes\""
        );
        assert_eq!(
            err("stress --threads"),
            "`stress`: missing argument for option '--threads'"
        );
        assert_eq!(
            err("stress --ops many"),
            "`stress`: cannot parse argument \"many\": invalid digit found in string"
        );
        assert_eq!(
            err("fuzz --seconds 0"),
            "`fuzz`: `--seconds` needs a positive number"
        );
        assert_eq!(err("bench arena"), "`bench`: unexpected argument \"arena\"");
        assert_eq!(
            err("bench --programs --criterion"),
            "`bench`: `--programs` runs the programs only: drop `--criterion`"
        );
        assert_eq!(
            err("loom --preemptions -1"),
            "`loom`: cannot parse argument \"-1\": invalid digit found in string"
        );
    }

    #[test]
    fn dashes_end_the_flags() {
        // After `--`, flags are the suite's (or the test binary's).
        assert_eq!(
            parse_str("bench -- --full"),
            Ok(Task::Bench(BenchOpts {
                extra: vec!["--full".into()],
                ..BenchOpts::default()
            }))
        );
        assert_eq!(
            parse_str("loom -- --preemptions 3"),
            Ok(Task::Loom(LoomOpts {
                preemptions: None,
                extra: vec!["--preemptions".into(), "3".into()],
            }))
        );
        assert_eq!(parse_str("bench --"), Ok(Task::Bench(BenchOpts::default())));
        assert!(parse_str("test -- --long").is_err());
        assert!(parse_str("stress -- 1").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn non_unicode_arguments_are_refused() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'a', 0xff]);
        assert!(parse([
            OsString::from("bench"),
            OsString::from("--json"),
            bad.clone()
        ])
        .is_err());
        assert!(parse([OsString::from("fuzz"), bad.clone()]).is_err());
        assert!(parse([bad]).is_err());
    }
}
