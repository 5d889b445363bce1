//! What the suite measured: one [`Record`] per (benchmark, parameter,
//! contender), the project's targets as [`Target`]s, and the terminal
//! tables. The JSON and markdown renderings live in [`crate::report`].

use serde::Serialize;

use crate::interleave::Rounds;
use crate::machine::Machine;

/// One measured cell (serialized as a JSON record, `benches/BENCHMARKS.md`).
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    /// Benchmark id, `B1`..`B9`.
    pub bench: &'static str,
    /// Benchmark title (`fast path`).
    pub title: &'static str,
    /// Parameter within the benchmark (`64 B`, `F=1000`).
    pub param: String,
    /// Contender label.
    pub contender: String,
    /// Unit of `median` (`ns/pair`, `%`, `bytes`, ...).
    pub unit: &'static str,
    /// Median over the samples.
    pub median: f64,
    /// Samples the median is over (interleaved rounds; 1 for a
    /// deterministic count).
    pub samples: usize,
    /// This contender over the kmem contender of the same benchmark and
    /// parameter (median of per-round ratios when interleaved); `None`
    /// where the group has no kmem contender.
    #[serde(rename = "ratio_to_kmem")]
    pub ratio: Option<f64>,
    /// True for the group's kmem contender (its ratio is 1).
    pub kmem: bool,
    /// Free text: what was not measurable, counters, caveats.
    pub note: String,
}

/// One of the project's targets, as measured by this run.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// What is targeted, in words.
    pub what: &'static str,
    /// The target itself (`<= 0.8x mimalloc`).
    pub target: &'static str,
    /// The measured value, in words (`0.62x`), or why it was not measured.
    pub measured: String,
    /// Met, not met, or not measured in this run (`None`).
    pub met: Option<bool>,
    /// Which benchmark it is read from.
    pub source: &'static str,
}

impl Target {
    /// `met`, `NOT met` or `not measured`.
    pub fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        }
    }
}

/// Everything one run produced.
pub struct Results {
    /// Where it ran.
    pub machine: Machine,
    /// `quick` or `full`.
    pub mode: &'static str,
    /// The cells, in the order measured.
    pub records: Vec<Record>,
    /// The targets, once evaluated.
    pub targets: Vec<Target>,
    /// Skips and caveats, one line each, per benchmark id.
    pub notes: Vec<(&'static str, String)>,
}

/// Benchmark id and title, as every record of one group carries them.
#[derive(Clone, Copy, Debug)]
pub struct Bench {
    /// `B1`..`B9`.
    pub id: &'static str,
    /// Title.
    pub title: &'static str,
}

impl Results {
    /// No records yet.
    pub fn new(machine: Machine, mode: &'static str) -> Self {
        Self {
            machine,
            mode,
            records: Vec::new(),
            targets: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds one cell.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        b: Bench,
        param: &str,
        contender: &str,
        unit: &'static str,
        median: f64,
        samples: usize,
        ratio: Option<f64>,
        kmem: bool,
    ) -> &mut Record {
        self.records.push(Record {
            bench: b.id,
            title: b.title,
            param: param.to_string(),
            contender: contender.to_string(),
            unit,
            median,
            samples,
            ratio,
            kmem,
            note: String::new(),
        });
        self.records.last_mut().expect("just pushed")
    }

    /// Adds one cell per contender of interleaved `rounds`, each median
    /// divided by `per_op` (a batch's operations), ratios to contender
    /// `kmem` (`None`: the group has no kmem contender).
    pub fn push_rounds(
        &mut self,
        b: Bench,
        param: &str,
        unit: &'static str,
        rounds: &Rounds,
        kmem: Option<usize>,
        per_op: f64,
    ) {
        for (c, label) in rounds.labels.iter().enumerate() {
            let ratio = kmem.map(|k| rounds.median_ratio(c, k));
            self.push(
                b,
                param,
                label,
                unit,
                rounds.median_ns(c) / per_op,
                rounds.ns[c].len(),
                ratio,
                kmem == Some(c),
            );
        }
    }

    /// Records a skip or caveat of benchmark `id`.
    pub fn note(&mut self, id: &'static str, text: impl Into<String>) {
        let text = text.into();
        println!("  note ({id}): {text}");
        self.notes.push((id, text));
    }

    /// The record of (`bench`, `param`, `contender`), if measured.
    pub fn find(&self, bench: &str, param: &str, contender: &str) -> Option<&Record> {
        self.records
            .iter()
            .find(|r| r.bench == bench && r.param == param && r.contender == contender)
    }

    /// Prints the records of benchmark `id` measured since index `from` as
    /// a markdown table.
    pub fn print_since(&self, from: usize) {
        let rows = &self.records[from..];
        let Some(first) = rows.first() else { return };
        println!("\n{} {}", first.bench, first.title);
        println!("| parameter | contender | median | unit | ratio to kmem | samples | note |");
        println!("|---|---|---:|---|---:|---:|---|");
        for r in rows {
            println!("{}", row(r));
        }
    }

    /// Prints the targets table.
    pub fn print_targets(&self) {
        println!("\nProject targets (benches/BENCHMARKS.md)");
        print!("{}", self.targets_table());
    }

    /// The targets as a markdown table, one line each after the header.
    pub fn targets_table(&self) -> String {
        let mut md = String::from(
            "| target | wanted | measured | verdict | from |\n|---|---|---|---|---|\n",
        );
        for t in &self.targets {
            md += &format!(
                "| {} | {} | {} | **{}** | {} |\n",
                t.what,
                t.target,
                t.measured,
                t.verdict(),
                t.source
            );
        }
        md
    }
}

/// A value with about 3 significant digits.
pub fn fmt_value(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let a = x.abs();
    if a >= 1000.0 || a == 0.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// One markdown table row of `r`.
pub fn row(r: &Record) -> String {
    let ratio = match r.ratio {
        Some(x) if r.kmem => format!("**{}** (kmem)", fmt_value(x)),
        Some(x) => fmt_value(x),
        None => "-".into(),
    };
    format!(
        "| {} | {} | {} | {} | {} | {} | {} |",
        r.param,
        r.contender,
        fmt_value(r.median),
        r.unit,
        ratio,
        r.samples,
        r.note
    )
}

#[cfg(test)]
mod tests {
    use super::{fmt_value, row, Bench, Results};
    use crate::interleave::Rounds;
    use crate::machine::Machine;

    #[test]
    fn values_format() {
        assert_eq!(fmt_value(1234.6), "1235");
        assert_eq!(fmt_value(123.45), "123.5");
        assert_eq!(fmt_value(3.25159), "3.25");
        assert_eq!(fmt_value(0.25), "0.250");
        assert_eq!(fmt_value(f64::NAN), "-");
    }

    #[test]
    fn rounds_become_records() {
        let mut res = Results::new(Machine::detect(), "quick");
        let rounds = Rounds {
            labels: vec!["kmem".into(), "peer".into()],
            ns: vec![vec![10.0, 20.0, 10.0], vec![30.0, 40.0, 20.0]],
        };
        let b = Bench {
            id: "B1",
            title: "fast path",
        };
        res.push_rounds(b, "64 B", "ns/pair", &rounds, Some(0), 1.0);
        let peer = res.find("B1", "64 B", "peer").unwrap();
        assert_eq!(peer.median, 30.0);
        assert_eq!(peer.ratio, Some(2.0));
        assert_eq!(peer.samples, 3);
        let k = res.find("B1", "64 B", "kmem").unwrap();
        assert!(k.kmem && k.ratio == Some(1.0));
        assert!(row(k).contains("**1.00** (kmem)"));
        assert!(res.find("B1", "16 B", "kmem").is_none());
    }
}
