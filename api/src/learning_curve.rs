//! The prequential learning curve as an SVG picture: HR@10 of each slice of the log against
//! the events learned before it, beside the whole log's HR@10.

use std::path::Path;

use plotters::prelude::*;

/// One slice of the log: events learned when it ended, and its HR@10.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    pub events: u64,
    pub hr_at_10: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("no slices to plot")]
    Empty,
    #[error("cannot draw {path}: {message}")]
    Draw { path: String, message: String },
}

/// Draws `curve` (and the overall HR@10 as a flat line) into the SVG file at `path`.
pub fn draw(path: &Path, curve: &[CurvePoint], overall: f64) -> Result<(), PlotError> {
    let last = curve.last().ok_or(PlotError::Empty)?;
    let failed = |e: &dyn std::fmt::Display| PlotError::Draw {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let top = curve
        .iter()
        .map(|p| p.hr_at_10)
        .fold(overall, f64::max)
        .max(0.01)
        * 1.15;
    let root = SVGBackend::new(path, (800, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "streamrec on MovieLens-100K: prequential HR@10",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0u64..last.events, 0f64..top)
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .x_desc("events learned")
        .y_desc("HR@10 of the slice ending here")
        .x_label_formatter(&|x| format!("{}k", x / 1000))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .draw()
        .map_err(|e| failed(&e))?;
    let blue = RGBColor(26, 115, 232);
    chart
        .draw_series(LineSeries::new(
            curve.iter().map(|p| (p.events, p.hr_at_10)),
            blue.stroke_width(2),
        ))
        .map_err(|e| failed(&e))?
        .label("HR@10 per slice")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], blue.stroke_width(2)));
    chart
        .draw_series(
            curve
                .iter()
                .map(|p| Circle::new((p.events, p.hr_at_10), 3, blue.filled())),
        )
        .map_err(|e| failed(&e))?;
    let grey = RGBColor(95, 99, 104);
    chart
        .draw_series(LineSeries::new(
            [(0, overall), (last.events, overall)],
            grey.stroke_width(1),
        ))
        .map_err(|e| failed(&e))?
        .label(format!("whole log: {overall:.4}"))
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey.stroke_width(1)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_slice_into_an_svg() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("curve.svg");
        let curve: Vec<CurvePoint> = (1..=10)
            .map(|i| CurvePoint {
                events: i * 10_000,
                hr_at_10: 0.02 * i as f64,
            })
            .collect();
        draw(&path, &curve, 0.11).expect("drawn");
        let svg = std::fs::read_to_string(&path).expect("written");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        // One marker per slice, and the legend names the overall figure.
        assert_eq!(svg.matches("<circle").count(), curve.len(), "{svg}");
        assert!(svg.contains("whole log: 0.1100"));
        assert!(matches!(draw(&path, &[], 0.1), Err(PlotError::Empty)));
    }
}
