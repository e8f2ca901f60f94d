//! Drawing one row of an image table as a PNG, for people to look at.

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};

use crate::Table;
use crate::error::{DataError, Input, Result};

/// Sample PNGs are scaled up (nearest neighbour) until their shorter side is at least this.
pub(crate) const MIN_SAMPLE_SIDE: usize = 64;
/// ... but never past this longer side.
const MAX_SAMPLE_SIDE: usize = 4096;

/// Row `index` of an image table as a PNG: grayscale for 1 channel, RGB for 3, scaled up by a
/// whole factor so the shorter side is at least [`MIN_SAMPLE_SIDE`] pixels. A value `v` is the
/// byte `round(255 * v / pixel_max)` (clamped), the inverse of how uploaded and predicted
/// images are read, so `digits` (0 to 16) draws 16 as white.
///
/// Errors: [`DataError::NotFound`] for an index past the last row; [`DataError::Invalid`] on field `id`
/// for a table that has no images, or images of other than 1 or 3 channels.
pub fn sample_png(table: &Table, name: &str, index: usize) -> Result<Vec<u8>> {
    let Some([channels, height, width]) = table.image_shape else {
        return Err(DataError::invalid(
            Input::Row,
            format!("data set '{name}' has no images; its rows are plain feature vectors"),
        ));
    };
    let color = match channels {
        1 => ExtendedColorType::L8,
        3 => ExtendedColorType::Rgb8,
        _ => {
            return Err(DataError::invalid(
                Input::Row,
                format!(
                    "data set '{name}' has {channels}-channel images; only 1 or 3 can be drawn"
                ),
            ));
        }
    };
    let pixels = height * width;
    if index >= table.n_rows() || channels * pixels != table.n_features() || pixels == 0 {
        return Err(DataError::NotFound {
            what: "sample",
            id: format!(
                "{index} of data set '{name}' (it has rows 0 to {})",
                table.n_rows().saturating_sub(1)
            ),
        });
    }
    let row = table.row(index);
    let pixel_max = table.pixel_max;
    let to_byte = |v: f32| ((v / pixel_max).clamp(0.0, 1.0) * 255.0).round() as u8;
    let scale = (MIN_SAMPLE_SIDE.div_ceil(height.min(width)))
        .min(MAX_SAMPLE_SIDE / height.max(width))
        .max(1);
    let (out_h, out_w) = (height * scale, width * scale);
    let mut bytes = Vec::with_capacity(out_h * out_w * channels);
    for y in 0..out_h {
        for x in 0..out_w {
            let pixel = (y / scale) * width + x / scale;
            for c in 0..channels {
                bytes.push(to_byte(row[c * pixels + pixel]));
            }
        }
    }
    let mut png = Vec::new();
    let (w, h) = (u32::try_from(out_w), u32::try_from(out_h));
    let (Ok(w), Ok(h)) = (w, h) else {
        return Err(DataError::Internal(format!(
            "a sample of {out_w}x{out_h} pixels"
        )));
    };
    PngEncoder::new(&mut png)
        .write_image(&bytes, w, h, color)
        .map_err(|err| DataError::internal("encoding a sample PNG", err))?;
    Ok(png)
}

/// Row `index` of an image table as RGB bytes at its own size (gray repeated in each channel),
/// with the value mapping of [`sample_png`]: `(width, height, bytes)`. `None` for a table
/// without 1- or 3-channel images, or an index past the last row.
pub fn sample_rgb(table: &Table, index: usize) -> Option<(usize, usize, Vec<u8>)> {
    let [channels, height, width] = table.image_shape?;
    let pixels = height * width;
    if !matches!(channels, 1 | 3)
        || index >= table.n_rows()
        || channels * pixels != table.n_features()
    {
        return None;
    }
    let row = table.row(index);
    let pixel_max = table.pixel_max;
    let to_byte = |v: f32| ((v / pixel_max).clamp(0.0, 1.0) * 255.0).round() as u8;
    let mut bytes = Vec::with_capacity(pixels * 3);
    for pixel in 0..pixels {
        for c in 0..3 {
            bytes.push(to_byte(row[(c % channels) * pixels + pixel]));
        }
    }
    Some((width, height, bytes))
}
