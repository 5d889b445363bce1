//! The suite's outputs besides the terminal: the JSON records (`--json`)
//! and the markdown report with its SVG charts (`--report DIR`).

use core::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::machine::Machine;
use crate::results::{fmt_value, row, Record, Results, Target};
use crate::svg::{LineChart, Series};

/// Version of the JSON layout (bumped when a field changes meaning).
pub const SCHEMA: u64 = 1;

/// The `--json` document (fields: `benches/BENCHMARKS.md`).
#[derive(Serialize)]
struct Document<'a> {
    suite: &'static str,
    schema: u64,
    mode: &'a str,
    machine: &'a Machine,
    records: Vec<MachineRecord<'a>>,
    targets: &'a [Target],
    notes: Vec<Note<'a>>,
}

/// A record with the machine it ran on (every record carries it).
#[derive(Serialize)]
struct MachineRecord<'a> {
    #[serde(flatten)]
    record: &'a Record,
    machine: &'a Machine,
}

/// A note on one benchmark.
#[derive(Serialize)]
struct Note<'a> {
    bench: &'a str,
    note: &'a str,
}

/// The records as one JSON document (fields: `benches/BENCHMARKS.md`).
/// Non-finite medians and ratios are written as `null`.
pub fn json(res: &Results) -> String {
    let machine = &res.machine;
    let doc = Document {
        suite: "kmem-suite",
        schema: SCHEMA,
        mode: res.mode,
        machine,
        records: res
            .records
            .iter()
            .map(|record| MachineRecord { record, machine })
            .collect(),
        targets: &res.targets,
        notes: res
            .notes
            .iter()
            .map(|(bench, note)| Note { bench, note })
            .collect(),
    };
    serde_json::to_string(&doc).expect("the records serialize")
}

/// One chart per bench id, drawn from the records (`x` parsed from the
/// parameter by `x_of`, one series per contender).
pub fn chart_from(
    res: &Results,
    bench: &str,
    unit: &str,
    x_of: impl Fn(&str) -> Option<(f64, String)>,
) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    for r in res
        .records
        .iter()
        .filter(|r| r.bench == bench && r.unit == unit)
    {
        let Some((x, name_suffix)) = x_of(&r.param) else {
            continue;
        };
        let name = format!("{}{name_suffix}", r.contender);
        match series.iter_mut().find(|s| s.name == name) {
            Some(s) => s.points.push((x, r.median)),
            None => series.push(Series {
                name,
                points: vec![(x, r.median)],
            }),
        }
    }
    series
}

/// Compact markdown tables of benchmark `bench`: one per unit, a row per
/// parameter, a column per contender, each cell the median and, after it,
/// the ratio to kmem in parentheses (`-`: not measured).
pub fn pivot(res: &Results, bench: &str) -> String {
    let rows: Vec<_> = res.records.iter().filter(|r| r.bench == bench).collect();
    let mut units: Vec<&str> = Vec::new();
    for r in &rows {
        if !units.contains(&r.unit) {
            units.push(r.unit);
        }
    }
    let mut out = String::new();
    for unit in units {
        let of_unit: Vec<_> = rows.iter().filter(|r| r.unit == unit).collect();
        let mut params: Vec<&str> = Vec::new();
        for r in &of_unit {
            if !params.contains(&r.param.as_str()) {
                params.push(&r.param);
            }
        }
        // Consecutive parameters with the same contenders share a table.
        let mut tables: Vec<(Vec<&str>, Vec<&str>)> = Vec::new();
        for p in params {
            let cs: Vec<&str> = of_unit
                .iter()
                .filter(|r| r.param == p)
                .map(|r| r.contender.as_str())
                .collect();
            match tables.last_mut() {
                Some((last, ps)) if *last == cs => ps.push(p),
                _ => tables.push((cs, vec![p])),
            }
        }
        for (contenders, params) in tables {
            let _ = writeln!(out, "\n| {unit} | {} |", contenders.join(" | "));
            let _ = writeln!(out, "|---|{}", "---:|".repeat(contenders.len()));
            for p in params {
                let cells: Vec<String> = contenders
                    .iter()
                    .map(|c| {
                        of_unit
                            .iter()
                            .find(|r| r.param == p && r.contender == *c)
                            .map_or("-".into(), |r| match r.ratio {
                                Some(x) if !r.kmem => {
                                    format!("{} ({}x)", fmt_value(r.median), fmt_value(x))
                                }
                                _ => fmt_value(r.median),
                            })
                    })
                    .collect();
                let _ = writeln!(out, "| {p} | {} |", cells.join(" | "));
            }
        }
    }
    out
}

/// Writes `report.md` and the charts into `dir`; returns the report's path.
///
/// # Errors
/// Any I/O error.
pub fn write_dir(res: &Results, dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut md = String::new();
    let _ = writeln!(md, "# kmem side-by-side suite ({} mode)\n", res.mode);
    let _ = writeln!(md, "Machine: {}\n", res.machine.summary());
    let _ = writeln!(
        md,
        "Ratios are the contender over the benchmark's kmem contender (median of \
         per-round ratios where interleaved): above 1 means kmem is faster or smaller, for \
         time and byte units; for `%` utilisation, above 1 means the peer packs more.\n"
    );
    let charts = crate::suite::charts(res);
    for (file, title, chart) in &charts {
        std::fs::write(dir.join(file), chart.render())?;
        let _ = writeln!(md, "![{title}]({file})\n");
    }
    if !res.targets.is_empty() {
        let _ = writeln!(md, "## Project targets\n");
        md.push_str(&res.targets_table());
        md.push('\n');
    }
    let mut last = "";
    for r in &res.records {
        if r.bench != last {
            last = r.bench;
            let _ = writeln!(md, "\n## {} {}\n", r.bench, r.title);
            for (_, n) in res.notes.iter().filter(|(id, _)| *id == r.bench) {
                let _ = writeln!(md, "- {n}");
            }
            md.push_str(&pivot(res, r.bench));
            let _ = writeln!(md, "\nAll records:");
            let _ = writeln!(
                md,
                "\n| parameter | contender | median | unit | ratio to kmem | samples | note |"
            );
            let _ = writeln!(md, "|---|---|---:|---|---:|---:|---|");
        }
        let _ = writeln!(md, "{}", row(r));
    }
    let path = dir.join("report.md");
    std::fs::write(&path, md)?;
    Ok(path)
}

/// A chart whose series come from [`chart_from`].
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    x_log: bool,
    y_log: bool,
    series: Vec<Series>,
) -> LineChart {
    LineChart {
        title: title.into(),
        x_label: x_label.into(),
        y_label: y_label.into(),
        x_log,
        y_log,
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::{chart_from, json, write_dir, SCHEMA};
    use crate::machine::Machine;
    use crate::results::{Bench, Results, Target};

    #[test]
    fn json_and_report() {
        let mut res = Results::new(Machine::detect(), "quick");
        let b = Bench {
            id: "B5",
            title: "vmem \"latency\"",
        };
        res.push(b, "F=10", "kmem", "ns/pair", 50.0, 11, Some(1.0), true);
        res.push(b, "F=100", "kmem", "ns/pair", 52.0, 11, Some(1.0), true);
        res.push(b, "F=10", "vmem", "ns/pair", f64::NAN, 11, None, false);
        res.note("B5", "a note");
        res.targets.push(Target {
            what: "B5 latency",
            target: "flat",
            measured: "not run".into(),
            met: None,
            source: "B5",
        });
        let j = json(&res);
        assert!(j.contains(r#""title":"vmem \"latency\"""#));
        assert!(j.contains(r#""median":null"#) && j.contains(r#""ratio_to_kmem":1.0"#));
        assert_eq!(j.matches(r#""machine":{"#).count(), 4);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["suite"], "kmem-suite");
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["machine"]["profile"], res.machine.profile);
        let r = &v["records"][2];
        assert_eq!(r["contender"], "vmem");
        assert_eq!(r["param"], "F=10");
        assert_eq!(r["unit"], "ns/pair");
        assert_eq!(r["samples"], 11);
        assert_eq!(r["kmem"], false);
        assert!(r["median"].is_null() && r["ratio_to_kmem"].is_null());
        assert_eq!(r["machine"]["nproc"], res.machine.nproc);
        // Field order as before serde: the record's fields, then its machine.
        assert!(j.contains(
            r#"{"bench":"B5","title":"vmem \"latency\"","param":"F=10","contender":"vmem","unit":"ns/pair","median":null,"samples":11,"ratio_to_kmem":null,"kmem":false,"note":"","machine":{"nproc":"#
        ));
        assert_eq!(v["notes"][0]["bench"], "B5");
        assert_eq!(v["notes"][0]["note"], "a note");
        assert_eq!(
            v["targets"],
            serde_json::json!([{
                "what": "B5 latency",
                "target": "flat",
                "measured": "not run",
                "met": null,
                "source": "B5",
            }])
        );
        let s = chart_from(&res, "B5", "ns/pair", |p| {
            p.strip_prefix("F=")?
                .parse()
                .ok()
                .map(|x| (x, String::new()))
        });
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].points, [(10.0, 50.0), (100.0, 52.0)]);
        let dir = std::env::temp_dir().join(format!("kmem-suite-test-{}", std::process::id()));
        let path = write_dir(&res, &dir).unwrap();
        let md = std::fs::read_to_string(&path).unwrap();
        assert!(md.contains("## B5") && md.contains("- a note") && md.contains("| F=100 | kmem |"));
        let p = super::pivot(&res, "B5");
        assert!(p.contains("| ns/pair | kmem | vmem |") && p.contains("| ns/pair | kmem |\n"));
        assert!(p.contains("| F=10 | 50.00 | - |") && p.contains("| F=100 | 52.00 |\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
