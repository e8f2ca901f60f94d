//! A grid of disagreement samples: for each side (A right and B wrong, and the reverse) the
//! sample images, each captioned with its row, true label and both models' answers.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::{
    Chart, DrawResult, GRID, INK, ImageFormat, MUTED, Message, anchored, fit_text, render,
    text_style, titled,
};
use crate::error::Result;

/// Tiles per row.
const COLUMNS: usize = 6;
/// Side of a drawn sample, in pixels.
const IMAGE: u32 = 112;
const TILE_W: u32 = 170;
const TILE_H: u32 = IMAGE + 86;
const SECTION_HEAD: u32 = 40;
const RIGHT: RGBColor = RGBColor(0x2E, 0x7D, 0x32);
const WRONG: RGBColor = RGBColor(0xC6, 0x28, 0x28);

/// One sample image with what the two models said about it.
#[derive(Clone, Debug)]
pub struct SampleTile {
    /// The row's index in the data set.
    pub index: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
    /// RGB bytes, row by row (`width * height * 3`).
    pub rgb: Vec<u8>,
    /// The true label.
    pub truth: String,
    /// Model A's label and confidence.
    pub a: (String, f32),
    /// Model B's label and confidence.
    pub b: (String, f32),
}

/// A titled group of tiles.
#[derive(Clone, Debug)]
pub struct TileSection {
    /// e.g. "A right, B wrong (12 in all)".
    pub heading: String,
    /// Its samples.
    pub tiles: Vec<SampleTile>,
}

/// The disagreement samples as an image grid.
pub fn disagreement_grid(
    title: &str,
    subtitle: &str,
    sections: &[TileSection],
    format: ImageFormat,
) -> Result<Vec<u8>> {
    if sections.iter().all(|s| s.tiles.is_empty()) {
        return render(
            &Message {
                size: (1000, 400),
                title: title.into(),
                message: "The two models agree on every sample of this split".into(),
            },
            format,
        );
    }
    render(
        &Gallery {
            title,
            subtitle,
            sections,
        },
        format,
    )
}

struct Gallery<'a> {
    title: &'a str,
    subtitle: &'a str,
    sections: &'a [TileSection],
}

fn rows_of(section: &TileSection) -> u32 {
    section.tiles.len().div_ceil(COLUMNS).max(1) as u32
}

impl Gallery<'_> {
    fn draw_tile<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        (x0, y0): (i32, i32),
        tile: &SampleTile,
    ) -> DrawResult<DB> {
        let (w, h) = (tile.width.max(1), tile.height.max(1));
        let scale = (IMAGE as f64 / w.max(h) as f64).max(0.01);
        let left = x0 + (TILE_W as i32 - (w as f64 * scale) as i32) / 2;
        // Runs of equal pixels along a row are one rectangle, which keeps the SVG small.
        for y in 0..h {
            let mut x = 0;
            while x < w {
                let at = (y * w + x) * 3;
                let Some(px) = tile.rgb.get(at..at + 3) else {
                    break;
                };
                let mut end = x + 1;
                while end < w && tile.rgb.get((y * w + end) * 3..(y * w + end) * 3 + 3) == Some(px)
                {
                    end += 1;
                }
                let color = RGBColor(px[0], px[1], px[2]);
                area.draw(&Rectangle::new(
                    [
                        (
                            left + (x as f64 * scale) as i32,
                            y0 + (y as f64 * scale) as i32,
                        ),
                        (
                            left + (end as f64 * scale).ceil() as i32,
                            y0 + ((y + 1) as f64 * scale).ceil() as i32,
                        ),
                    ],
                    color.filled(),
                ))?;
                x = end;
            }
        }
        let center = x0 + TILE_W as i32 / 2;
        let top = y0 + IMAGE as i32 + 8;
        let caption = |text: String, line: i32, color: &'static RGBColor| {
            Text::new(
                fit_text(&text, 14.0, TILE_W - 8),
                (center, line),
                anchored(text_style(14.0, color), HPos::Center, VPos::Top),
            )
        };
        area.draw(&caption(
            format!("#{} true: {}", tile.index, tile.truth),
            top,
            &INK,
        ))?;
        for (i, (who, (label, confidence))) in
            [("A", &tile.a), ("B", &tile.b)].into_iter().enumerate()
        {
            let color = if *label == tile.truth { &RIGHT } else { &WRONG };
            let line = top + 19 * (i as i32 + 1);
            area.draw(&caption(
                format!("{who}: {label} ({confidence:.2})"),
                line,
                color,
            ))?;
        }
        Ok(())
    }
}

impl Chart for Gallery<'_> {
    fn size(&self) -> (u32, u32) {
        let rows: u32 = self.sections.iter().map(rows_of).sum();
        (
            TILE_W * COLUMNS as u32 + 40,
            80 + self.sections.len() as u32 * SECTION_HEAD + rows * TILE_H + 20,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let body = titled(root, self.title, self.subtitle)?;
        let mut y = 4;
        for section in self.sections {
            body.draw(&Text::new(
                section.heading.clone(),
                (20, y + 10),
                anchored(text_style(18.0, &INK), HPos::Left, VPos::Top),
            ))?;
            y += SECTION_HEAD as i32;
            if section.tiles.is_empty() {
                body.draw(&Text::new(
                    "none",
                    (20, y),
                    anchored(text_style(15.0, &MUTED), HPos::Left, VPos::Top),
                ))?;
            }
            for (i, tile) in section.tiles.iter().enumerate() {
                let x0 = 20 + (i % COLUMNS) as i32 * TILE_W as i32;
                let y0 = y + (i / COLUMNS) as i32 * TILE_H as i32;
                body.draw(&Rectangle::new(
                    [
                        (x0 + 2, y0 - 4),
                        (x0 + TILE_W as i32 - 2, y0 + TILE_H as i32 - 12),
                    ],
                    GRID.stroke_width(1),
                ))?;
                self.draw_tile(&body, (x0, y0), tile)?;
            }
            y += (rows_of(section) * TILE_H) as i32;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::svg_check::{assert_texts, no_bad_numbers, texts};
    use super::*;

    fn tile(index: usize, truth: &str, a: &str, b: &str) -> SampleTile {
        // A 4x4 image: left half red, right half white.
        let mut rgb = Vec::new();
        for _ in 0..4 {
            for x in 0..4 {
                rgb.extend_from_slice(if x < 2 {
                    &[200, 0, 0]
                } else {
                    &[255, 255, 255]
                });
            }
        }
        SampleTile {
            index,
            width: 4,
            height: 4,
            rgb,
            truth: truth.into(),
            a: (a.into(), 0.91),
            b: (b.into(), 0.62),
        }
    }

    #[test]
    fn each_sample_is_drawn_with_its_true_label_and_both_answers() {
        let sections = [
            TileSection {
                heading: "A right, B wrong (2 in all)".into(),
                tiles: vec![
                    tile(7, "circle", "circle", "square"),
                    tile(9, "square", "square", "circle"),
                ],
            },
            TileSection {
                heading: "B right, A wrong (0 in all)".into(),
                tiles: vec![],
            },
        ];
        let svg = String::from_utf8(
            disagreement_grid("Disagreements", "test split", &sections, ImageFormat::Svg).unwrap(),
        )
        .unwrap();
        no_bad_numbers(&svg);
        let texts = texts(&svg);
        assert_texts(
            &texts,
            &[
                "#7 true: circle",
                "A: circle (0.91)",
                "B: square (0.62)",
                "A right, B wrong (2 in all)",
                "none",
            ],
        );
        assert!(svg.contains("#C80000"), "the image's red pixels are drawn");
        let png = disagreement_grid("Disagreements", "", &sections, ImageFormat::Png).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
