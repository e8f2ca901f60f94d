//! Charts: pure functions from stored metrics to SVG or PNG bytes, one file per chart kind.
//!
//! Every chart shares the helpers here: one palette, one font (Liberation Sans, committed under
//! `assets/fonts` and compiled in, so PNG text needs no system font library), axis scales that
//! switch to log10 when positive values span more than a decade, and tick labels that stay short.
//! Non-finite values are never drawn: a series is broken into segments around them.

mod curves;
mod effects;
mod gallery;
mod gradients;
mod heatmap;
mod layout;
mod lr_finder;
mod noise;
mod overlay;
#[cfg(test)]
mod samples;
mod scale;
#[cfg(test)]
pub(crate) mod svg_check;
mod sweep;
mod text;

pub use curves::learning_curves;
pub use gallery::{SampleTile, TileSection, disagreement_grid};
pub use gradients::gradient_norms;
pub use lr_finder::lr_finder_chart;
pub use noise::{NoiseSeries, step_noise};
pub use overlay::overlay_curves;
pub use sweep::sweep_chart;

pub(crate) use layout::{
    AxisText, LegendEntry, Message, Swatch, draw_legend, legend_width, panel, titled,
};
pub(crate) use scale::{Scale, min_max, segments};
pub(crate) use text::{anchored, fit_text, fmt_tick, fmt_value, text_style, truncate};

use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};

/// What a chart is encoded as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    /// Scalable vector graphics, text as text.
    Svg,
    /// A PNG bitmap of the same size in pixels.
    Png,
}

impl ImageFormat {
    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Svg => "image/svg+xml",
            ImageFormat::Png => "image/png",
        }
    }
}

/// The one font family every chart uses; SVG viewers substitute their own sans-serif.
const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../../assets/fonts/LiberationSans-Regular.ttf");

fn register_font() {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    debug_assert!(ok, "the bundled font parses");
}

/// Colours of series, in order: Tableau 10, distinguishable and colour-blind friendly enough.
pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4E, 0x79, 0xA7),
    RGBColor(0xF2, 0x8E, 0x2B),
    RGBColor(0x59, 0xA1, 0x4F),
    RGBColor(0xE1, 0x57, 0x59),
    RGBColor(0xB0, 0x7A, 0xA1),
    RGBColor(0x76, 0xB7, 0xB2),
    RGBColor(0xED, 0xC9, 0x48),
    RGBColor(0x9C, 0x75, 0x5F),
    RGBColor(0xFF, 0x9D, 0xA7),
    RGBColor(0xBA, 0xB0, 0xAC),
];
const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
const MUTED: RGBColor = RGBColor(0x66, 0x66, 0x66);
const GRID: RGBColor = RGBColor(0xE4, 0xE4, 0xE4);

/// The colour of the `i`th series (cycling after ten).
pub(crate) fn series_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

type DrawResult<DB> =
    std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A chart that can draw itself on any plotters backend.
pub(crate) trait Chart {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws everything on `root`.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// Renders a chart in the format asked for.
pub(crate) fn render(chart: &impl Chart, format: ImageFormat) -> Result<Vec<u8>> {
    register_font();
    let (width, height) = chart.size();
    let failed = |err: &dyn std::fmt::Display| Error::Internal(format!("drawing a chart: {err}"));
    match format {
        ImageFormat::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
                chart.draw(&root).map_err(|e| failed(&e))?;
                root.present().map_err(|e| failed(&e))?;
            }
            Ok(svg.into_bytes())
        }
        ImageFormat::Png => {
            let mut rgb = vec![0u8; width as usize * height as usize * 3];
            {
                let root =
                    BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
                chart.draw(&root).map_err(|e| failed(&e))?;
                root.present().map_err(|e| failed(&e))?;
            }
            encode_png(&rgb, width, height)
        }
    }
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(rgb, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|err| Error::internal("encoding a chart PNG", err))?;
    Ok(out)
}
