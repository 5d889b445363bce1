//! What the bench binary was asked for, read from the arguments criterion
//! also parses, so a custom `main` can skip fixtures and extra passes that no
//! selected benchmark needs.

use std::ffi::OsString;

use lexopt::prelude::*;
use lexopt::Parser;

/// Criterion's long options that take a value (the value is not a
/// filter), without their dashes.
const WITH_VALUE: &[&str] = &[
    "color",
    "save-baseline",
    "baseline",
    "baseline-lenient",
    "format",
    "profile-time",
    "load-baseline",
    "sample-size",
    "warm-up-time",
    "measurement-time",
    "nresamples",
    "noise-threshold",
    "confidence-level",
    "significance-level",
    "plotting-backend",
    "output-format",
];

/// Criterion's short options that take a value: `-c` (`--color`), `-s`
/// (`--save-baseline`), `-b` (`--baseline`).
const SHORT_WITH_VALUE: &[char] = &['c', 's', 'b'];

/// The parts of the command line the benches act on.
#[derive(Clone, Debug, Default)]
pub struct Args {
    /// Positional benchmark filters (substrings of benchmark ids).
    pub filters: Vec<String>,
    /// `--list`, `--test` or `--profile-time`: run no extra measurements.
    pub no_extras: bool,
}

impl Args {
    /// Reads the process arguments.
    pub fn from_env() -> Self {
        Self::parse(std::env::args_os().skip(1))
    }

    /// Reads `args` (without the program name) with [`lexopt`]: options
    /// as `--name value`, `--name=value` or `-s value`; criterion's other
    /// flags and anything it would reject are skipped (criterion reports
    /// those itself).
    pub fn parse<I>(args: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<OsString>,
    {
        let mut out = Self::default();
        let mut p = Parser::from_args(args);
        loop {
            let arg = match p.next() {
                Ok(Some(arg)) => arg,
                Ok(None) => break,
                // A value given to a flag that takes none (`--list=x`).
                Err(_) => continue,
            };
            match arg {
                Long("list" | "test") => out.no_extras = true,
                Long(name) if WITH_VALUE.contains(&name) => {
                    if name == "profile-time" {
                        out.no_extras = true;
                    }
                    let _ = p.value();
                }
                Short(c) if SHORT_WITH_VALUE.contains(&c) => {
                    let _ = p.value();
                }
                Value(filter) => out.filters.push(filter.to_string_lossy().into_owned()),
                Long(_) | Short(_) => {}
            }
        }
        out
    }

    /// True when some benchmark of `group` may be selected: no filter, or a
    /// filter that is a substring of the group name or starts with it.
    pub fn wants(&self, group: &str) -> bool {
        self.filters.is_empty()
            || self
                .filters
                .iter()
                .any(|f| group.contains(f.as_str()) || f.starts_with(group))
    }

    /// True when some benchmark of `group` may be selected, its ids being
    /// `group/<contender>/...` for the given `contenders`: [`wants`](Self::wants),
    /// or a filter that names a contender (`vmem`, `range-alloc/same`).
    pub fn wants_any(&self, group: &str, contenders: &[&str]) -> bool {
        self.wants(group)
            || self.filters.iter().any(|f| {
                contenders
                    .iter()
                    .any(|c| c.contains(f.as_str()) || f.starts_with(&format!("{c}/")))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::Args;

    fn parse(args: &[&str]) -> Args {
        Args::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn values_are_not_filters() {
        let a = parse(&["--bench", "--warm-up-time", "1", "--measurement-time", "2"]);
        assert!(a.filters.is_empty());
        assert!(!a.no_extras);
        assert!(a.wants("instant_fit_flat"));
    }

    #[test]
    fn filters_select_groups() {
        let a = parse(&["--bench", "-s", "base", "instant_fit_flat/kmem/1"]);
        assert_eq!(a.filters, ["instant_fit_flat/kmem/1"]);
        assert!(a.wants("instant_fit_flat"));
        assert!(!a.wants("peers_10k_live"));
        let a = parse(&["10k_live"]);
        assert!(a.wants("peers_10k_live") && a.wants("peers_10k_live_pages"));
        assert!(!a.wants("instant_fit_split"));
    }

    #[test]
    fn filters_select_contenders() {
        let peers = ["kmem", "vmem", "vm-allocator", "range-alloc"];
        let a = parse(&["vmem"]);
        assert!(!a.wants("peers_10k_live"));
        assert!(a.wants_any("peers_10k_live", &peers));
        assert!(parse(&["range-alloc/same"]).wants_any("peers_10k_live_pages", &peers));
        assert!(parse(&["peers_10k_live/kmem"]).wants_any("peers_10k_live", &peers));
        assert!(!parse(&["instant_fit_flat"]).wants_any("peers_10k_live", &peers));
        assert!(!parse(&["talc"]).wants_any("peers_10k_live", &peers));
    }

    #[test]
    fn modes_without_extras() {
        assert!(parse(&["--test"]).no_extras);
        assert!(parse(&["--list"]).no_extras);
        assert!(parse(&["--profile-time", "5"]).no_extras);
        assert!(parse(&["--profile-time=5"]).no_extras);
        assert!(!parse(&["--bench", "-n"]).no_extras);
    }

    #[test]
    fn joined_values_and_odd_flags() {
        let a = parse(&[
            "--save-baseline=base",
            "-sbase",
            "-c",
            "never",
            "--verbose=x",
            "vmem",
        ]);
        assert_eq!(a.filters, ["vmem"]);
        assert!(!a.no_extras);
        let a = parse(&["--verbose", "--", "--odd"]);
        assert_eq!(a.filters, ["--odd"]);
    }
}
