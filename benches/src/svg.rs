//! The suite report's SVG line charts, drawn with plotters' SVG backend
//! (no bitmap backend, no font libraries: text stays SVG `<text>` for the
//! viewer to render): one or more named series of (x, y) points, linear or
//! log10 axes, a legend beside the plot.

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One line of a chart.
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points, in drawing order; non-finite or (on a log axis) non-positive
    /// coordinates are skipped.
    pub points: Vec<(f64, f64)>,
}

/// A line chart.
pub struct LineChart {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Log10 x axis.
    pub x_log: bool,
    /// Log10 y axis.
    pub y_log: bool,
    /// The lines.
    pub series: Vec<Series>,
}

/// Width and height of the chart, pixels.
const SIZE: (u32, u32) = (760, 440);
/// Width of the legend, right of the plot.
const LEGEND: u32 = 200;
const FONT: &str = "sans-serif";
const COLORS: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// The axis range over `values`: whole powers of ten around them on a log
/// axis, from 0 (or below, for negative values) to their maximum on a
/// linear one.
fn range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return if log { (1.0, 10.0) } else { (0.0, 1.0) };
    }
    if log {
        let (lo, hi) = (lo.log10().floor(), hi.log10().ceil());
        (10f64.powf(lo), 10f64.powf(hi.max(lo + 1.0)))
    } else {
        let lo = lo.min(0.0);
        (
            lo,
            if hi > lo {
                hi + (hi - lo) * 0.05
            } else {
                lo + 1.0
            },
        )
    }
}

/// A tick label: integers plainly, powers of ten as `10^k` past 10^4.
fn label(v: f64, log: bool) -> String {
    if log && v >= 1e5 {
        format!("10^{}", v.log10().round() as i32)
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

impl LineChart {
    fn usable(&self, (x, y): (f64, f64)) -> bool {
        x.is_finite() && y.is_finite() && (!self.x_log || x > 0.0) && (!self.y_log || y > 0.0)
    }

    fn points<'a>(&'a self, s: &'a Series) -> impl Iterator<Item = (f64, f64)> + 'a {
        s.points.iter().copied().filter(|&p| self.usable(p))
    }

    /// The chart as an SVG document.
    pub fn render(&self) -> String {
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
            let pts = || self.series.iter().flat_map(|s| self.points(s));
            let (x0, x1) = range(pts().map(|p| p.0), self.x_log);
            let (y0, y1) = range(pts().map(|p| p.1), self.y_log);
            let drawn = match (self.x_log, self.y_log) {
                (true, true) => self.draw(&root, (x0..x1).log_scale(), (y0..y1).log_scale()),
                (true, false) => self.draw(&root, (x0..x1).log_scale(), y0..y1),
                (false, true) => self.draw(&root, x0..x1, (y0..y1).log_scale()),
                (false, false) => self.draw(&root, x0..x1, y0..y1),
            };
            // Drawing into a String does no I/O.
            drawn
                .and_then(|()| root.present())
                .expect("an SVG chart in memory");
        }
        out
    }

    fn draw<X, Y>(
        &self,
        root: &DrawingArea<SVGBackend<'_>, Shift>,
        x: X,
        y: Y,
    ) -> Result<(), DrawingAreaErrorKind<std::io::Error>>
    where
        X: AsRangedCoord<Value = f64>,
        Y: AsRangedCoord<Value = f64>,
        X::CoordDescType: ValueFormatter<f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        root.fill(&WHITE)?;
        let (plot, legend) = root.split_horizontally(SIZE.0 - LEGEND);
        let mut chart = ChartBuilder::on(&plot)
            .caption(&self.title, (FONT, 19))
            .margin(10)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(x, y)?;
        let (x_log, y_log) = (self.x_log, self.y_log);
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&|v| label(*v, x_log))
            .y_label_formatter(&|v| label(*v, y_log))
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 15))
            .max_light_lines(0)
            .draw()?;
        for (i, series) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart.draw_series(LineSeries::new(self.points(series), color.stroke_width(2)))?;
            chart.draw_series(
                self.points(series)
                    .map(|p| Circle::new(p, 3, color.filled())),
            )?;
            let y = 50 + 18 * i as i32;
            legend.draw(&PathElement::new([(12, y), (30, y)], color.stroke_width(3)))?;
            legend.draw(&Text::new(
                series.name.as_str(),
                (36, y),
                TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{label, range, LineChart, Series};

    #[test]
    fn ranges_and_labels() {
        assert_eq!(range([3.0, 50.0, 2e4].into_iter(), true), (1.0, 1e5));
        assert_eq!(range([10.0].into_iter(), true), (10.0, 100.0));
        assert_eq!(range([1.0, 2.0].into_iter(), false), (0.0, 2.1));
        assert_eq!(range(core::iter::empty(), false), (0.0, 1.0));
        assert_eq!(label(1e6, true), "10^6");
        assert_eq!(label(1e4, true), "10000");
        assert_eq!(label(1.5, false), "1.5");
        assert_eq!(label(0.25, false), "0.25");
    }

    #[test]
    fn renders_series_and_skips_bad_points() {
        let chart = LineChart {
            title: "B5 <latency>".into(),
            x_label: "free segments".into(),
            y_label: "ns".into(),
            x_log: true,
            y_log: true,
            series: vec![
                Series {
                    name: "kmem & co".into(),
                    points: vec![(1.0, 50.0), (1e3, 55.0), (1e6, 60.0), (0.0, 1.0)],
                },
                Series {
                    name: "peer".into(),
                    points: vec![(1.0, 40.0), (1e6, 4e6), (10.0, f64::NAN)],
                },
            ],
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        let lines = |width| {
            svg.matches(&format!(r#"stroke-width="{width}" points="#))
                .count()
        };
        assert_eq!(lines(2), 2, "two series");
        assert_eq!(lines(3), 2, "two legend keys");
        // 3 + 2 usable points.
        assert_eq!(svg.matches("<circle").count(), 5);
        assert!(svg.contains("B5 &lt;latency&gt;") && svg.contains("kmem &amp; co"));
        assert!(svg.contains("\n10^6\n"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn linear_axes_and_an_empty_chart() {
        let chart = |points| LineChart {
            title: "B3".into(),
            x_label: "threads".into(),
            y_label: "M pairs/s".into(),
            x_log: false,
            y_log: false,
            series: vec![Series {
                name: "kmem".into(),
                points,
            }],
        };
        let svg = chart(vec![(1.0, 250.0), (2.0, 280.0), (4.0, 300.0)]).render();
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("\nthreads\n") && svg.contains("\nM pairs/s\n"));
        let svg = chart(vec![(1.0, f64::NAN)]).render();
        assert!(svg.ends_with("</svg>\n") && !svg.contains("<circle"));
    }
}
