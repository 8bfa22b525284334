//! SVG charts for the run report, drawn with `plotters`' SVG backend.
//!
//! Every function returns one standalone `<svg>` document as a string (text
//! is emitted as `<text>` elements, so no fonts are needed at render time),
//! or `None` when there is nothing to draw. Plotters escapes all text it
//! writes, so model, step and feature names are safe to pass through.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::format::{compact, metric};
use crate::model::{Confusion, ModelReport};
use sluice_common::error::{EngineError, Result};

/// Width in pixels of the wide charts (ROC, bars).
const WIDE: u32 = 860;
const FONT: &str = "sans-serif";

/// Series colours, colour-blind friendly order.
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
const GREY: RGBColor = RGBColor(150, 150, 150);
const FAILED: RGBColor = RGBColor(214, 39, 40);
const BAR: RGBColor = RGBColor(31, 119, 180);

/// Colour of the `i`-th model, shared by the ROC chart and the HTML legend.
pub(crate) fn model_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

type DrawResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Runs a drawing closure on a fresh SVG canvas and returns the document.
fn draw_svg<F>(what: &str, size: (u32, u32), draw: F) -> Result<String>
where
    F: FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> DrawResult<()>,
{
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| EngineError::Internal(format!("report chart `{what}`: {e}")))?;
        draw(&root).map_err(|e| EngineError::Internal(format!("report chart `{what}`: {e}")))?;
        root.present()
            .map_err(|e| EngineError::Internal(format!("report chart `{what}`: {e}")))?;
    }
    Ok(svg)
}

/// Keeps finite points inside the unit square, sorted, with points closer
/// than a thousandth of the axis merged, so a curve computed on a million
/// rows stays a small SVG path.
pub(crate) fn roc_points(raw: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = raw
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|&(x, y)| (x.clamp(0.0, 1.0), y.clamp(0.0, 1.0)))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(pts.len().min(2048));
    let cell = |p: (f64, f64)| ((p.0 * 1000.0).round() as i64, (p.1 * 1000.0).round() as i64);
    for (i, p) in pts.iter().enumerate() {
        let last = i + 1 == pts.len();
        match out.last() {
            Some(prev) if !last && cell(*prev) == cell(*p) => {}
            _ => out.push(*p),
        }
    }
    out
}

/// Class names of label 0 and label 1 (the data contract's `indoor` column).
pub(crate) const CLASSES: [&str; 2] = ["outdoor", "indoor"];

/// Row-normalised share of each cell: `[[tn, fp], [fn, tp]]` over the actual
/// class totals; `None` for an empty row.
pub(crate) fn row_shares(c: &Confusion) -> [[Option<f64>; 2]; 2] {
    let row = |a: u64, b: u64| {
        let t = a + b;
        if t == 0 {
            [None, None]
        } else {
            [Some(a as f64 / t as f64), Some(b as f64 / t as f64)]
        }
    };
    [row(c.tn, c.fp), row(c.fn_, c.tp)]
}

/// A 2×2 heatmap of one model's confusion matrix with counts and row
/// percentages, shaded by row share. `None` when the matrix is empty.
pub fn confusion_chart(model: &ModelReport) -> Result<Option<String>> {
    let c = model.confusion;
    if c.total() == 0 {
        return Ok(None);
    }
    let shares = row_shares(&c);
    let counts = [[c.tn, c.fp], [c.fn_, c.tp]];
    let title = format!("{}: confusion matrix", model.name);
    let (left, top, cw, ch) = (130i32, 74i32, 128i32, 92i32);
    draw_svg(&title, (414, 300), |root| {
        let title_style =
            TextStyle::from((FONT, 17).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(title.clone(), (207, 10), title_style))?;
        let head =
            TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
        let side = TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
        for (k, class) in CLASSES.iter().enumerate() {
            let k = k as i32;
            let cx = left + k * cw + cw / 2;
            root.draw(&Text::new(
                format!("predicted {class}"),
                (cx, top - 14),
                head.clone(),
            ))?;
            let cy = top + k * ch + ch / 2;
            root.draw(&Text::new(
                format!("actual {class}"),
                (left - 10, cy),
                side.clone(),
            ))?;
        }
        for (r, row) in counts.iter().enumerate() {
            for (col, count) in row.iter().enumerate() {
                let share = shares[r][col].unwrap_or(0.0);
                let x0 = left + col as i32 * cw;
                let y0 = top + r as i32 * ch;
                let fill = shade(share);
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cw, y0 + ch)],
                    fill.filled(),
                ))?;
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cw, y0 + ch)],
                    WHITE.stroke_width(2),
                ))?;
                let ink = if share > 0.55 { WHITE } else { BLACK };
                let big = TextStyle::from((FONT, 20).into_font().style(FontStyle::Bold))
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                let small = TextStyle::from((FONT, 14).into_font())
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                let (cx, cy) = (x0 + cw / 2, y0 + ch / 2);
                root.draw(&Text::new(compact_count(*count), (cx, cy - 11), big))?;
                let pct = shares[r][col]
                    .map_or("–".to_string(), |s| format!("{:.1} % of row", s * 100.0));
                root.draw(&Text::new(pct, (cx, cy + 15), small))?;
            }
        }
        Ok(())
    })
    .map(Some)
}

/// Counts with thousands separators (`12 345`).
fn compact_count(n: u64) -> String {
    crate::format::thousands(n)
}

/// White → dark blue by `share` in `[0, 1]`.
fn shade(share: f64) -> RGBColor {
    let s = share.clamp(0.0, 1.0);
    let lerp = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * s).round() as u8;
    RGBColor(lerp(247, 8), lerp(251, 69), lerp(255, 148))
}

/// One bar of a horizontal bar chart.
#[derive(Debug, Clone)]
pub(crate) struct Bar {
    /// Label left of the bar.
    pub label: String,
    /// Bar length; `None` draws no bar (the note says why).
    pub value: Option<f64>,
    /// Text right of the bar.
    pub note: String,
    /// Draw in the failure colour.
    pub failed: bool,
    /// Draw the label in grey (a skipped step).
    pub muted: bool,
}

/// A horizontal bar chart, first bar on top. `None` when there are no bars.
pub(crate) fn hbar_chart(title: &str, x_desc: &str, bars: &[Bar]) -> Result<Option<String>> {
    if bars.is_empty() {
        return Ok(None);
    }
    let n = bars.len();
    let max = bars
        .iter()
        .filter_map(|b| b.value)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let x_max = if max > 0.0 { max * 1.22 } else { 1.0 };
    let label_chars = bars
        .iter()
        .map(|b| b.label.chars().count())
        .max()
        .unwrap_or(4);
    let label_w = (label_chars as u32 * 8 + 20).clamp(60, 300);
    let height = 110 + 28 * n as u32;
    draw_svg(title, (WIDE, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 19))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(label_w)
            .build_cartesian_2d(0f64..x_max, 0f64..n as f64)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(2)
            .y_label_formatter(&|_| String::new())
            .x_desc(x_desc)
            .x_label_formatter(&|v| compact(*v))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        let label_style = |muted: bool| {
            let style =
                TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
            if muted {
                style.color(&GREY)
            } else {
                style.color(&BLACK)
            }
        };
        let note_style =
            TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        for (i, bar) in bars.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            let (lx, ly) = chart.backend_coord(&(0.0, y + 0.5));
            root.draw(&Text::new(
                bar.label.clone(),
                (lx - 8, ly),
                label_style(bar.muted),
            ))?;
            let v = bar.value.filter(|v| v.is_finite()).unwrap_or(0.0).max(0.0);
            let color = if bar.failed { FAILED } else { BAR };
            if v > 0.0 {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y + 0.18), (v, y + 0.82)],
                    color.filled(),
                )))?;
            }
            let (nx, ny) = chart.backend_coord(&(v, y + 0.5));
            root.draw(&Text::new(
                bar.note.clone(),
                (nx + 6, ny),
                note_style.clone(),
            ))?;
        }
        Ok(())
    })
    .map(Some)
}

/// One line of a [`line_chart`].
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Legend text.
    pub label: String,
    /// Colour index ([`model_color`]).
    pub color: usize,
    /// Points in data coordinates.
    pub points: Vec<(f64, f64)>,
    /// Also mark every point with a dot (sparse series such as a reliability diagram).
    pub dots: bool,
}

/// A dashed reference line from one point to another, with its legend text.
pub(crate) type ReferenceLine<'a> = ((f64, f64), (f64, f64), &'a str);

/// How a [`line_chart`] lays out its axes.
#[derive(Debug, Clone)]
pub(crate) struct LineChart<'a> {
    /// Chart title.
    pub title: &'a str,
    /// X axis description.
    pub x_desc: &'a str,
    /// Y axis description.
    pub y_desc: &'a str,
    /// X range (in plotted coordinates: log10 when `log_x`).
    pub x: (f64, f64),
    /// Y range.
    pub y: (f64, f64),
    /// The x axis shows `10^x` labels (data are given as log10 already).
    pub log_x: bool,
    /// A dashed reference line `(from, to)` with its legend text.
    pub reference: Option<ReferenceLine<'a>>,
    /// Where the legend goes.
    pub legend: SeriesLabelPosition,
}

/// A chart of one or more lines (ROC, PR, calibration, learning curves).
/// `None` when no series has a point.
pub(crate) fn line_chart(spec: &LineChart<'_>, series: &[Series]) -> Result<Option<String>> {
    let series: Vec<&Series> = series.iter().filter(|s| !s.points.is_empty()).collect();
    if series.is_empty() {
        return Ok(None);
    }
    let (x0, x1) = if spec.x.1 > spec.x.0 {
        spec.x
    } else {
        (spec.x.0, spec.x.0 + 1.0)
    };
    let (y0, y1) = if spec.y.1 > spec.y.0 {
        spec.y
    } else {
        (spec.y.0, spec.y.0 + 1.0)
    };
    draw_svg(spec.title, (WIDE, 480), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(spec.title, (FONT, 19))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        let log_x = spec.log_x;
        let x_fmt = move |v: &f64| {
            if log_x {
                let p = 10f64.powf(*v);
                if p >= 0.1 {
                    format!("{p:.1}")
                } else {
                    format!("1e{}", v.round() as i64)
                }
            } else {
                compact(*v)
            }
        };
        chart
            .configure_mesh()
            .x_desc(spec.x_desc)
            .y_desc(spec.y_desc)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&|v| compact(*v))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        if let Some((a, b, label)) = spec.reference {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![a, b],
                    6,
                    5,
                    GREY.stroke_width(1),
                ))?
                .label(label)
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], GREY.stroke_width(1)));
        }
        for s in &series {
            let color = model_color(s.color);
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(x, y)| (x.clamp(x0, x1), y.clamp(y0, y1)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
                });
            if s.dots {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
            }
        }
        chart
            .configure_series_labels()
            .position(spec.legend.clone())
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(200, 200, 200))
            .draw()?;
        Ok(())
    })
    .map(Some)
}

/// One group of bars in a [`histogram_chart`].
#[derive(Debug, Clone)]
pub(crate) struct BinSeries<'a> {
    /// Legend text.
    pub label: &'a str,
    /// Colour index ([`model_color`]).
    pub color: usize,
    /// Count per equal-width bin over `[0, 1]`.
    pub counts: &'a [u64],
}

/// Counts in equal-width bins over `[0, 1]`, one bar colour per series
/// (drawn side by side within a bin), with an optional dashed threshold.
/// `None` when every count is zero.
pub(crate) fn histogram_chart(
    title: &str,
    x_desc: &str,
    series: &[BinSeries<'_>],
    threshold: Option<f64>,
) -> Result<Option<String>> {
    let max = series
        .iter()
        .flat_map(|s| s.counts.iter().copied())
        .max()
        .unwrap_or(0);
    if max == 0 {
        return Ok(None);
    }
    let k = series.len().max(1) as f64;
    draw_svg(title, (WIDE, 400), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 19))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..1f64, 0f64..(max as f64 * 1.12))?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("rows")
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| compact(*v))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        for (j, s) in series.iter().enumerate() {
            let color = model_color(s.color);
            let n = s.counts.len().max(1) as f64;
            let w = 1.0 / n;
            chart
                .draw_series(s.counts.iter().enumerate().map(|(i, &c)| {
                    let left = i as f64 * w + w * j as f64 / k;
                    Rectangle::new(
                        [(left + w * 0.04, 0.0), (left + w / k - w * 0.04, c as f64)],
                        color.mix(0.85).filled(),
                    )
                }))?
                .label(s.label.to_string())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 18, y + 5)], color.filled())
                });
        }
        if let Some(t) = threshold.filter(|t| t.is_finite()) {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(t, 0.0), (t, max as f64 * 1.12)],
                    6,
                    5,
                    GREY.stroke_width(2),
                ))?
                .label(format!("threshold {}", metric(Some(t))))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], GREY.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperMiddle)
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(200, 200, 200))
            .draw()?;
        Ok(())
    })
    .map(Some)
}

/// A heat map of a two-parameter grid: `rows` × `cols` cells shaded by
/// score, each labelled with its value (`None`: point not in the grid).
pub(crate) fn heatmap_chart(
    title: &str,
    row_desc: &str,
    col_desc: &str,
    rows: &[String],
    cols: &[String],
    cells: &[Vec<Option<f64>>],
) -> Result<Option<String>> {
    let finite: Vec<f64> = cells
        .iter()
        .flatten()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if rows.is_empty() || cols.is_empty() || finite.is_empty() {
        return Ok(None);
    }
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (left, top) = (150i32, 80i32);
    let cw = (640 / cols.len() as i32).clamp(60, 160);
    let ch = 44i32;
    let width = (left + cw * cols.len() as i32 + 30) as u32;
    let height = (top + ch * rows.len() as i32 + 30) as u32;
    draw_svg(title, (width.max(420), height), |root| {
        let center = |size| {
            TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Center, VPos::Center))
        };
        root.draw(&Text::new(
            title.to_string(),
            (width.max(420) as i32 / 2, 16),
            center(18),
        ))?;
        root.draw(&Text::new(
            format!("{col_desc} →"),
            (left + cw * cols.len() as i32 / 2, 44),
            center(14),
        ))?;
        let side = TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
        root.draw(&Text::new(
            format!("{row_desc} ↓"),
            (left - 10, top - 14),
            side.clone(),
        ))?;
        for (c, name) in cols.iter().enumerate() {
            root.draw(&Text::new(
                name.clone(),
                (left + c as i32 * cw + cw / 2, top - 14),
                center(14),
            ))?;
        }
        for (r, name) in rows.iter().enumerate() {
            let y0 = top + r as i32 * ch;
            root.draw(&Text::new(
                name.clone(),
                (left - 10, y0 + ch / 2),
                side.clone(),
            ))?;
            for (c, v) in cells.get(r).into_iter().flatten().enumerate() {
                let x0 = left + c as i32 * cw;
                let share = match v {
                    Some(v) if v.is_finite() && hi > lo => (v - lo) / (hi - lo),
                    Some(v) if v.is_finite() => 1.0,
                    _ => 0.0,
                };
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cw, y0 + ch)],
                    shade(0.15 + 0.85 * share).filled(),
                ))?;
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cw, y0 + ch)],
                    WHITE.stroke_width(2),
                ))?;
                let ink = if share > 0.5 { WHITE } else { BLACK };
                root.draw(&Text::new(
                    v.map_or_else(|| "–".to_string(), |v| metric(Some(v))),
                    (x0 + cw / 2, y0 + ch / 2),
                    center(14).color(&ink),
                ))?;
            }
        }
        Ok(())
    })
    .map(Some)
}
