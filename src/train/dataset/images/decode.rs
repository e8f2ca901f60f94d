//! Decoding the laid-out images, resizing them to one size, and packing them into a table.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{ColorType, DynamicImage, ImageDecoder, ImageReader, Limits};

use super::layout::{LaidOut, Layout};
use super::{ImageLimits, ImageOptions, reject, shown};
use crate::error::{Error, Result};
use crate::train::dataset::{LabelKind, Table};

/// What an image's header says, read without decoding its pixels.
struct Header {
    width: u32,
    height: u32,
    gray: bool,
}

/// Decodes every image into one row: resized (stretched, not cropped) with a triangle filter to
/// the requested size, or to the size all images share; 1 or 3 channels; `C x H x W` order;
/// values in [0, 1].
pub(super) fn into_table(
    layout: Layout,
    options: &ImageOptions,
    limits: &ImageLimits,
) -> Result<Table> {
    let headers = layout
        .images
        .iter()
        .map(|image| read_header(image, limits))
        .collect::<Result<Vec<_>>>()?;
    let (width, height) = match options.size {
        Some(size) => size,
        None => shared_size(&layout.images, &headers)?,
    };
    let channels = options
        .channels
        .unwrap_or(if headers.iter().all(|h| h.gray) { 1 } else { 3 });
    if channels != 1 && channels != 3 {
        return Err(Error::invalid(
            "channels",
            format!("{channels} channels is not supported; use 1 (grayscale) or 3 (RGB)"),
        ));
    }
    let per_image = channels * height as usize * width as usize;
    let values = (layout.images.len() as u64).saturating_mul(per_image as u64);
    if values > limits.max_table_values {
        return Err(reject(format!(
            "{} images of {channels}x{height}x{width} make {values} values, more than the {} \
             allowed; send a smaller image_size (or channels=1)",
            layout.images.len(),
            limits.max_table_values
        )));
    }

    let mut features = Vec::with_capacity(layout.images.len() * per_image);
    for (image, header) in layout.images.iter().zip(&headers) {
        let decoded = decode(image)?;
        let resized = if (header.width, header.height) == (width, height) {
            decoded
        } else {
            decoded.resize_exact(width, height, FilterType::Triangle)
        };
        push_planes(&resized, channels, &mut features);
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

/// Reads an image's size and colour type without decoding its pixels; a size over the limits
/// is rejected here, before any pixel buffer exists.
fn read_header(image: &LaidOut, limits: &ImageLimits) -> Result<Header> {
    let mut reader = ImageReader::new(Cursor::new(image.bytes.as_slice()))
        .with_guessed_format()
        .map_err(|err| undecodable(image, err))?;
    let mut header_limits = Limits::default();
    // The pixels of the largest image allowed, at 16 bits and 4 channels.
    let side = u64::from(limits.max_image_side);
    header_limits.max_alloc = Some((side * side * 8).max(1 << 20));
    reader.limits(header_limits);
    let decoder = reader
        .into_decoder()
        .map_err(|err| undecodable(image, err))?;
    let (width, height) = decoder.dimensions();
    let max = limits.max_image_side;
    if width > max || height > max {
        return Err(reject(format!(
            "entry '{}' is {width}x{height} pixels; images may be at most {max}x{max}",
            shown(&image.name)
        )));
    }
    if width == 0 || height == 0 {
        return Err(undecodable(image, "it has no pixels"));
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
fn decode(image: &LaidOut) -> Result<DynamicImage> {
    image::load_from_memory(&image.bytes).map_err(|err| undecodable(image, err))
}

fn undecodable(image: &LaidOut, err: impl std::fmt::Display) -> Error {
    reject(format!(
        "entry '{}' could not be decoded as a PNG or JPEG image: {err}",
        shown(&image.name)
    ))
}

/// The size every image has, or a rejection naming two that differ.
fn shared_size(images: &[LaidOut], headers: &[Header]) -> Result<(u32, u32)> {
    let first = (headers[0].width, headers[0].height);
    match headers.iter().position(|h| (h.width, h.height) != first) {
        None => Ok(first),
        Some(i) => Err(reject(format!(
            "the images differ in size: '{}' is {}x{} but '{}' is {}x{}; send image_size \
             (e.g. 32 or 32x32) to resize them all",
            shown(&images[0].name),
            first.0,
            first.1,
            shown(&images[i].name),
            headers[i].width,
            headers[i].height
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
    let mut row = Vec::with_capacity(channels * height as usize * width as usize);
    push_planes(&resized, channels, &mut row);
    Ok(row)
}

/// Appends the image's channels one after the other (`C x H x W`), each value in [0, 1] at 8
/// bits of precision; transparency is dropped. Plain index loops: this runs once per value and
/// the crate is unoptimised in the dev profile.
fn push_planes(image: &DynamicImage, channels: usize, out: &mut Vec<f32>) {
    let start = out.len();
    if channels == 1 {
        let gray = image.to_luma8();
        let raw = gray.as_raw();
        out.resize(start + raw.len(), 0.0);
        let plane = &mut out[start..];
        for i in 0..raw.len() {
            plane[i] = f32::from(raw[i]) / 255.0;
        }
    } else {
        let rgb = image.to_rgb8();
        let raw = rgb.as_raw();
        let pixels = raw.len() / 3;
        out.resize(start + raw.len(), 0.0);
        let planes = &mut out[start..];
        for p in 0..pixels {
            planes[p] = f32::from(raw[3 * p]) / 255.0;
            planes[pixels + p] = f32::from(raw[3 * p + 1]) / 255.0;
            planes[2 * pixels + p] = f32::from(raw[3 * p + 2]) / 255.0;
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
