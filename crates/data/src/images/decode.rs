//! Decoding the laid-out images, resizing them to one size, and packing them into a table.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{ColorType, DynamicImage, ImageDecoder, ImageReader, Limits};

use super::archive::Visit;
use super::layout::{LaidOut, Layout};
use super::{ImageLimits, ImageOptions, reject, shown};
use crate::error::{DataError, Input, Result};
use crate::{LabelKind, Table};

/// What an image's header says, read without decoding its pixels.
#[derive(Clone, Copy, Debug)]
pub(super) struct Header {
    width: u32,
    height: u32,
    gray: bool,
}

/// Decodes every image into its row: resized (stretched, not cropped) with a triangle filter
/// to the requested size, or to the size all images share; 1 or 3 channels; `C x H x W`
/// order; values in [0, 1]. `reread` goes over the archive again, handing each image file to
/// the visitor in archive order, as the first pass did; each is decoded straight into its row,
/// so only the table and one image are in memory at a time.
pub(super) fn into_table(
    layout: Layout,
    options: &ImageOptions,
    limits: &ImageLimits,
    reread: impl FnOnce(&mut Visit<'_>) -> Result<()>,
) -> Result<Table> {
    let (width, height) = match options.size {
        Some(size) => size,
        None => shared_size(&layout.images)?,
    };
    let channels =
        options
            .channels
            .unwrap_or(if layout.images.iter().all(|image| image.header.gray) {
                1
            } else {
                3
            });
    if channels != 1 && channels != 3 {
        return Err(DataError::invalid(
            Input::Option("channels"),
            format!("{channels} channels is not supported; use 1 (grayscale) or 3 (RGB)"),
        ));
    }
    let per_image = channels * height as usize * width as usize;
    let n = layout.images.len();
    let values = (n as u64).saturating_mul(per_image as u64);
    if values > limits.max_table_values {
        return Err(reject(format!(
            "{n} images of {channels}x{height}x{width} make {values} values ({} bytes at 4 \
             bytes each), more than the {} allowed (--max-dataset-bytes); send a smaller \
             image_size (or channels=1)",
            values.saturating_mul(4),
            limits.max_table_values
        )));
    }

    // Row of each image file, by its place in the archive.
    let mut row_of = vec![usize::MAX; n];
    for (row, image) in layout.images.iter().enumerate() {
        if let Some(slot) = row_of.get_mut(image.ordinal) {
            *slot = row;
        }
    }
    let mut features = vec![0f32; n * per_image];
    let mut seen = 0usize;
    reread(&mut |name, _path, bytes| {
        let row = row_of.get(seen).copied().unwrap_or(usize::MAX);
        seen += 1;
        let Some(image) = layout.images.get(row).filter(|image| image.name == name) else {
            return Err(changed());
        };
        let decoded = decode(&image.name, bytes)?;
        let resized = if (image.header.width, image.header.height) == (width, height) {
            decoded
        } else {
            decoded.resize_exact(width, height, FilterType::Triangle)
        };
        write_planes(
            &resized,
            channels,
            &mut features[row * per_image..(row + 1) * per_image],
        );
        Ok(())
    })?;
    if seen != n {
        return Err(changed());
    }
    let labels = layout.images.iter().map(|image| image.class).collect();
    let splits = layout.has_split.then(|| {
        layout
            .images
            .iter()
            .filter_map(|image| image.split)
            .collect()
    });
    Ok(Table {
        feature_names: feature_names(channels, width as usize * height as usize),
        features,
        labels,
        classes: layout.classes,
        label_kind: LabelKind::String,
        splits,
        image_shape: Some([channels, height as usize, width as usize]),
        pixel_max: 1.0,
    })
}

/// The second pass over an archive did not see what the first one saw.
fn changed() -> DataError {
    DataError::Internal("an uploaded archive changed between its two readings".into())
}

/// Reads an image's size and colour type without decoding its pixels; a size over the limits
/// is rejected here, before any pixel buffer exists.
pub(super) fn read_header(name: &str, bytes: &[u8], limits: &ImageLimits) -> Result<Header> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|err| undecodable(name, err))?;
    let mut header_limits = Limits::default();
    // The pixels of the largest image allowed, at 16 bits and 4 channels.
    let side = u64::from(limits.max_image_side);
    header_limits.max_alloc = Some((side * side * 8).max(1 << 20));
    reader.limits(header_limits);
    let decoder = reader
        .into_decoder()
        .map_err(|err| undecodable(name, err))?;
    let (width, height) = decoder.dimensions();
    let max = limits.max_image_side;
    if width > max || height > max {
        return Err(reject(format!(
            "entry '{}' is {width}x{height} pixels; images may be at most {max}x{max}",
            shown(name)
        )));
    }
    if width == 0 || height == 0 {
        return Err(undecodable(name, "it has no pixels"));
    }
    let gray = matches!(
        decoder.color_type(),
        ColorType::L8 | ColorType::La8 | ColorType::L16 | ColorType::La16
    );
    Ok(Header {
        width,
        height,
        gray,
    })
}

/// Decodes an image whose header passed [`read_header`] (so its size is within the limits).
/// `load_from_memory` rather than a reader of our own: its code is compiled, optimised, in the
/// `image` crate, which makes decoding about twice as fast in the dev profile.
fn decode(name: &str, bytes: &[u8]) -> Result<DynamicImage> {
    image::load_from_memory(bytes).map_err(|err| undecodable(name, err))
}

fn undecodable(name: &str, err: impl std::fmt::Display) -> DataError {
    reject(format!(
        "entry '{}' could not be decoded as a PNG or JPEG image: {err}",
        shown(name)
    ))
}

/// The size every image has, or a rejection naming two that differ.
fn shared_size(images: &[LaidOut]) -> Result<(u32, u32)> {
    let size = |image: &LaidOut| (image.header.width, image.header.height);
    let first = size(&images[0]);
    match images.iter().position(|image| size(image) != first) {
        None => Ok(first),
        Some(i) => Err(reject(format!(
            "the images differ in size: '{}' is {}x{} but '{}' is {}x{}; send image_size \
             (e.g. 32 or 32x32) to resize them all",
            shown(&images[0].name),
            first.0,
            first.1,
            shown(&images[i].name),
            images[i].header.width,
            images[i].header.height
        ))),
    }
}

/// Decodes one image for prediction exactly as uploads are decoded: its header checked against
/// `max_side` before any pixel is decoded, converted to `shape`'s channels, resized (stretched,
/// triangle filter) to its height and width when `any_size` (else an image of another size is
/// refused, saying the size expected), `C x H x W`, values in [0, 1]. The error says why, for
/// the caller to put next to the item's name.
pub fn decode_image_row(
    bytes: &[u8],
    shape: [usize; 3],
    max_side: u32,
    any_size: bool,
) -> std::result::Result<Vec<f32>, String> {
    let [channels, height, width] = shape;
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|err| format!("is not a readable image: {err}"))?;
    let mut header_limits = Limits::default();
    let side = u64::from(max_side);
    header_limits.max_alloc = Some((side * side * 8).max(1 << 20));
    reader.limits(header_limits);
    let decoder = reader
        .into_decoder()
        .map_err(|err| format!("is not a PNG or JPEG image: {err}"))?;
    let (w, h) = decoder.dimensions();
    if w > max_side || h > max_side {
        return Err(format!(
            "is {w}x{h} pixels; images may be at most {max_side}x{max_side}"
        ));
    }
    if w == 0 || h == 0 {
        return Err("has no pixels".into());
    }
    if !any_size && (w as usize, h as usize) != (width, height) {
        return Err(format!(
            "is {w}x{h} pixels; this model takes {width}x{height} images (width x height), the \
             size of its data set; a job that declares data.preprocessing.resize accepts any size"
        ));
    }
    let decoded =
        image::load_from_memory(bytes).map_err(|err| format!("could not be decoded: {err}"))?;
    let (width, height) = (width as u32, height as u32);
    let resized = if (w, h) == (width, height) {
        decoded
    } else {
        decoded.resize_exact(width, height, FilterType::Triangle)
    };
    let mut row = vec![0.0; channels * height as usize * width as usize];
    write_planes(&resized, channels, &mut row);
    Ok(row)
}

/// Writes the image's channels one after the other (`C x H x W`) into `out` (exactly that
/// many values), each value in [0, 1] at 8 bits of precision; transparency is dropped. Plain
/// index loops: this runs once per value and the crate is unoptimised in the dev profile.
fn write_planes(image: &DynamicImage, channels: usize, out: &mut [f32]) {
    if channels == 1 {
        let gray = image.to_luma8();
        let raw = gray.as_raw();
        let n = raw.len().min(out.len());
        for i in 0..n {
            out[i] = f32::from(raw[i]) / 255.0;
        }
    } else {
        let rgb = image.to_rgb8();
        let raw = rgb.as_raw();
        let pixels = (raw.len() / 3).min(out.len() / 3);
        for p in 0..pixels {
            out[p] = f32::from(raw[3 * p]) / 255.0;
            out[pixels + p] = f32::from(raw[3 * p + 1]) / 255.0;
            out[2 * pixels + p] = f32::from(raw[3 * p + 2]) / 255.0;
        }
    }
}

/// `pixel0`, `pixel1`, ... for grayscale; `red0`.., `green0`.., `blue0`.. for RGB.
fn feature_names(channels: usize, pixels: usize) -> Vec<String> {
    let prefixes: &[&str] = if channels == 1 {
        &["pixel"]
    } else {
        &["red", "green", "blue"]
    };
    prefixes
        .iter()
        .flat_map(|p| (0..pixels).map(move |i| format!("{p}{i}")))
        .collect()
}
