//! The suite's command line:
//! `kmem-suite [--full] [--json PATH] [--report DIR] [--threads 1,2,4] [FILTER...]`.

use core::time::Duration;
use std::ffi::OsString;
use std::path::PathBuf;

use lexopt::prelude::*;
use lexopt::Parser;

use crate::threads::parse_counts;

/// What to run and where to write it.
#[derive(Clone, Debug)]
pub struct Config {
    /// Longer windows and more rounds.
    pub full: bool,
    /// Where to write the JSON records, if anywhere.
    pub json: Option<PathBuf>,
    /// Directory of the markdown report and its SVG charts.
    pub report: PathBuf,
    /// Thread counts of B3 and B10 (`None`: each benchmark's default; the
    /// worker count of B4 stays 2).
    pub threads: Option<Vec<usize>>,
    /// Benchmark selectors (substrings of `B<n> <title>`, any case).
    pub filters: Vec<String>,
}

/// `--help` text.
pub const USAGE: &str =
    "usage: kmem-suite [--full] [--json PATH] [--report DIR] [--threads 1,2,4] [FILTER...]
  --full          longer windows and more rounds (quick mode is the default)
  --json PATH     write one record per (benchmark, parameter, contender)
  --report DIR    markdown report and SVG charts (default target/bench-report)
  --threads LIST  thread counts of B3 (default 1,2,4) and B10 (1,2,4,16,64)
  FILTER          run only benchmarks whose id or title contains it (B5, scaling)
environment:
  KMEM_DEBUG      debug mode for the kmem caches and kmalloc (1, or parts:
                  checks, redzone, poison, audit), as KmallocGlobal reads it";

impl Default for Config {
    fn default() -> Self {
        Self {
            full: false,
            json: None,
            report: PathBuf::from("target/bench-report"),
            threads: None,
            filters: Vec::new(),
        }
    }
}

impl Config {
    /// Parses the arguments (without the program name), with [`lexopt`]
    /// (`--json PATH` or `--json=PATH`). `Err` carries the message to print;
    /// `--help` gives `Err(USAGE)`.
    pub fn parse<I>(args: I) -> Result<Self, String>
    where
        I: IntoIterator,
        I::Item: Into<OsString>,
    {
        match Self::parse_args(&mut Parser::from_args(args)) {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(USAGE.to_string()),
            Err(e) => Err(format!("{e}\n{USAGE}")),
        }
    }

    /// [`parse`](Self::parse)'s work; `None` for `--help`.
    fn parse_args(p: &mut Parser) -> Result<Option<Self>, lexopt::Error> {
        let mut c = Self::default();
        while let Some(arg) = p.next()? {
            match arg {
                Long("full") => c.full = true,
                Long("json") => c.json = Some(p.value()?.into()),
                Long("report") => c.report = p.value()?.into(),
                Long("threads") => c.threads = Some(parse_counts(&p.value()?.string()?)?),
                Short('h') | Long("help") => return Ok(None),
                // cargo bench passes --bench to every target.
                Long("bench") => {}
                Value(filter) => c.filters.push(filter.string()?),
                _ => return Err(arg.unexpected()),
            }
        }
        Ok(Some(c))
    }

    /// True when benchmark `id` (`B5`) titled `title` is selected.
    pub fn wants(&self, id: &str, title: &str) -> bool {
        let name = format!("{id} {title}").to_lowercase();
        self.filters.is_empty()
            || self
                .filters
                .iter()
                .any(|f| name.contains(&f.to_lowercase()))
    }

    /// The thread counts given with `--threads`, or `default`.
    pub fn threads_or<'a>(&'a self, default: &'a [usize]) -> &'a [usize] {
        self.threads.as_deref().unwrap_or(default)
    }

    /// `quick` or `full`.
    pub fn mode(&self) -> &'static str {
        if self.full {
            "full"
        } else {
            "quick"
        }
    }

    /// Interleaved rounds per comparison.
    pub fn rounds(&self) -> usize {
        if self.full {
            31
        } else {
            21
        }
    }

    /// Length of one contender's batch in a round.
    pub fn batch(&self) -> Duration {
        Duration::from_millis(if self.full { 10 } else { 4 })
    }

    /// Picks the quick or the full value.
    pub fn pick<T>(&self, quick: T, full: T) -> T {
        if self.full {
            full
        } else {
            quick
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Config, USAGE};

    fn parse(args: &[&str]) -> Result<Config, String> {
        Config::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_and_options() {
        let c = parse(&[]).unwrap();
        assert!(!c.full && c.json.is_none() && c.threads.is_none());
        assert_eq!(c.threads_or(&[1, 2]), [1, 2]);
        assert_eq!(c.report.to_str(), Some("target/bench-report"));
        let c = parse(&[
            "--full",
            "--json",
            "o.json",
            "--threads",
            "4,1",
            "B5",
            "--report",
            "r",
        ])
        .unwrap();
        assert_eq!(c.threads_or(&[1, 2]), [1, 4]);
        assert!(c.full && c.json.unwrap().to_str() == Some("o.json"));
        assert_eq!(c.filters, ["B5"]);
        assert_eq!(c.report.to_str(), Some("r"));
        assert!(parse(&["--bench"]).unwrap().filters.is_empty());
        let c = parse(&["--json=o.json", "--threads=2", "--report=r"]).unwrap();
        assert_eq!(c.json.as_deref().and_then(|p| p.to_str()), Some("o.json"));
        assert_eq!(c.threads_or(&[1]), [2]);
        assert_eq!(c.report.to_str(), Some("r"));
    }

    #[test]
    fn errors_and_help() {
        let err = |args: &[&str]| parse(args).unwrap_err();
        assert!(err(&["--json"]).starts_with("missing argument for option '--json'\nusage: "));
        assert!(err(&["--bogus"]).starts_with("invalid option '--bogus'\nusage: "));
        assert!(err(&["--full=yes"]).starts_with("unexpected argument for option '--full'"));
        assert!(err(&["--threads", "0"]).starts_with("KMEM_BENCH_THREADS: bad thread count \"0\""));
        assert_eq!(err(&["--help"]), USAGE);
        assert_eq!(err(&["B5", "-h"]), USAGE);
    }

    #[test]
    fn filters_select_by_id_or_title() {
        let c = parse(&["b5", "Scaling"]).unwrap();
        assert!(c.wants("B5", "vmem latency"));
        assert!(c.wants("B3", "scaling"));
        assert!(!c.wants("B1", "fast path"));
        assert!(parse(&[]).unwrap().wants("B9", "import chains"));
    }
}
