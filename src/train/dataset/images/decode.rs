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
        let decoded = decode(image, limits)?;
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
        feature_names: feature_names(channels, (width * height) as usize),
        features,
        labels,
        classes: layout.classes,
        label_kind: LabelKind::String,
        splits,
        image_shape: Some([channels, height as usize, width as usize]),
    })
}

/// A reader of the image; `strict` adds the size limits (left out to read a header, so that an
/// image too large is reported with its size).
fn reader<'a>(
    image: &'a LaidOut,
    limits: &ImageLimits,
    strict: bool,
) -> Result<ImageReader<Cursor<&'a [u8]>>> {
    let mut reader = ImageReader::new(Cursor::new(image.bytes.as_slice()))
        .with_guessed_format()
        .map_err(|err| undecodable(image, err))?;
    let mut decode_limits = Limits::default();
    if strict {
        decode_limits.max_image_width = Some(limits.max_image_side);
        decode_limits.max_image_height = Some(limits.max_image_side);
    }
    // The pixels of the largest image allowed, at 16 bits and 4 channels.
    let side = u64::from(limits.max_image_side);
    decode_limits.max_alloc = Some((side * side * 8).max(1 << 20));
    reader.limits(decode_limits);
    Ok(reader)
}

fn read_header(image: &LaidOut, limits: &ImageLimits) -> Result<Header> {
    let decoder = reader(image, limits, false)?
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

fn decode(image: &LaidOut, limits: &ImageLimits) -> Result<DynamicImage> {
    reader(image, limits, true)?
        .decode()
        .map_err(|err| undecodable(image, err))
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

/// Appends the image's channels one after the other (`C x H x W`), each value in [0, 1];
/// transparency is dropped.
fn push_planes(image: &DynamicImage, channels: usize, out: &mut Vec<f32>) {
    if channels == 1 {
        out.extend(image.to_luma32f().into_raw().into_iter().map(unit));
    } else {
        let rgb = image.to_rgb32f().into_raw();
        for c in 0..3 {
            out.extend(rgb.iter().skip(c).step_by(3).copied().map(unit));
        }
    }
}

/// Keeps a value finite and in [0, 1] (decoders already give [0, 1]; this guards the rest).
fn unit(x: f32) -> f32 {
    if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        0.0
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
