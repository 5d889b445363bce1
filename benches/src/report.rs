//! The suite's outputs besides the terminal: the JSON records (`--json`)
//! and the markdown report with its SVG charts (`--report DIR`).

use core::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::json::Json;
use crate::results::{fmt_value, row, Results};
use crate::svg::{LineChart, Series};

/// Version of the JSON layout (bumped when a field changes meaning).
pub const SCHEMA: u64 = 1;

/// The records as one JSON document (fields: `benches/BENCHMARKS.md`).
pub fn json(res: &Results) -> String {
    let m = &res.machine;
    let machine = |j: &mut Json| {
        j.key("machine").begin_object();
        j.key("nproc").int(m.nproc as u64);
        j.field_str("cpu_model", &m.cpu_model);
        j.field_str("rustc", &m.rustc);
        j.field_str("date", &m.date);
        j.field_str("profile", m.profile);
        j.end_object();
    };
    let mut j = Json::new();
    j.begin_object();
    j.field_str("suite", "kmem-suite");
    j.key("schema").int(SCHEMA);
    j.field_str("mode", res.mode);
    machine(&mut j);
    j.key("records").begin_array();
    for r in &res.records {
        j.begin_object();
        j.field_str("bench", r.bench);
        j.field_str("title", r.title);
        j.field_str("param", &r.param);
        j.field_str("contender", &r.contender);
        j.field_str("unit", r.unit);
        j.key("median").number(r.median);
        j.key("samples").int(r.samples as u64);
        j.key("ratio_to_kmem").opt_number(r.ratio);
        j.key("kmem").boolean(r.kmem);
        j.field_str("note", &r.note);
        machine(&mut j);
        j.end_object();
    }
    j.end_array();
    j.key("targets").begin_array();
    for t in &res.targets {
        j.begin_object();
        j.field_str("what", t.what);
        j.field_str("target", t.target);
        j.field_str("measured", &t.measured);
        j.key("met");
        match t.met {
            Some(b) => j.boolean(b),
            None => j.null(),
        };
        j.field_str("source", t.source);
        j.end_object();
    }
    j.end_array();
    j.key("notes").begin_array();
    for (id, n) in &res.notes {
        j.begin_object().field_str("bench", id).field_str("note", n);
        j.end_object();
    }
    j.end_array();
    j.end_object();
    j.finish()
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
        let _ = writeln!(md, "| target | wanted | measured | verdict | from |");
        let _ = writeln!(md, "|---|---|---|---|---|");
        for t in &res.targets {
            let _ = writeln!(
                md,
                "| {} | {} | {} | **{}** | {} |",
                t.what,
                t.target,
                t.measured,
                t.verdict(),
                t.source
            );
        }
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
    use super::{chart_from, json, write_dir};
    use crate::machine::Machine;
    use crate::results::{Bench, Results};

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
        let j = json(&res);
        assert!(j.contains(r#""title":"vmem \"latency\"""#));
        assert!(j.contains(r#""median":null"#) && j.contains(r#""ratio_to_kmem":1"#));
        assert_eq!(j.matches(r#""machine":{"#).count(), 4);
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
