//! The report as an SVG bar chart: for every metric, each target's value relative to the baseline
//! (the first target = 1.0), so metrics of different units share one axis.

use plotters::prelude::*;

use crate::modes::Report;

const COLORS: [RGBColor; 4] = [BLUE, RED, GREEN, MAGENTA];

pub fn write(path: &std::path::Path, report: &Report) -> anyhow::Result<()> {
    let metrics = report.metric_names();
    let targets = report.rows.len();
    let mut max_ratio: f64 = 1.0;
    let mut bars = Vec::new();
    for (m, metric) in metrics.iter().enumerate() {
        let base = report.value(0, metric).unwrap_or(0.0);
        for t in 0..targets {
            let ratio = match report.value(t, metric) {
                Some(v) if base != 0.0 => v / base,
                _ => 0.0,
            };
            max_ratio = max_ratio.max(ratio);
            bars.push((m, t, ratio));
        }
    }
    let width = 160 + 120 * metrics.len() as u32;
    let root = SVGBackend::new(path, (width, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let slots = (metrics.len() * (targets + 1)) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "ratio to the first target (1.0 = equal)",
            ("sans-serif", 18),
        )
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..slots, 0.0..max_ratio * 1.15)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("ratio")
        .draw()?;
    for (m, t, ratio) in bars {
        let x = (m * (targets + 1) + t) as f64;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x + 0.1, 0.0), (x + 0.9, ratio)],
            COLORS[t % COLORS.len()].filled(),
        )))?;
    }
    for (m, metric) in metrics.iter().enumerate() {
        let x = (m * (targets + 1)) as f64;
        chart.draw_series(std::iter::once(Text::new(
            metric.to_string(),
            (x, -max_ratio * 0.04),
            ("sans-serif", 11),
        )))?;
    }
    for (t, row) in report.rows.iter().enumerate() {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, 0.0), (0.0, 0.0)],
                COLORS[t % COLORS.len()].filled(),
            )))?
            .label(row.target.clone())
            .legend(move |(x, y)| {
                Rectangle::new(
                    [(x, y - 5), (x + 10, y + 5)],
                    COLORS[t % COLORS.len()].filled(),
                )
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
