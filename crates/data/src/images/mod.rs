//! Image data sets: reading a zip, tar or tar.gz archive of class folders into a [`Table`] of
//! flattened images, and drawing one row back as a PNG.
//!
//! Nothing from an archive is ever unpacked to disk. The archive is read twice, one entry at a
//! time (within [`ImageLimits`]): first every entry's name and image header are checked and
//! the layout worked out; then each image is decoded and resized straight into its row. So
//! only the table and one image are ever in memory, not the archive or all of its files.

mod archive;
mod decode;
mod layout;
mod render;

#[cfg(test)]
mod tests;

use std::io::{Read, Seek};

use super::Table;
use crate::error::{DataError, Input, Result};
use layout::ArchiveFile;

pub use decode::decode_image_row;
pub use render::{sample_png, sample_rgb};

/// Limits on what an image archive may hold; each is checked while reading, never trusted from
/// the archive's own headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLimits {
    /// The most bytes the archive may expand to: the decompressed bytes actually read, counted
    /// as they come out of the decompressor.
    pub max_expanded_bytes: u64,
    /// The most entries (files, folders, anything) the archive may hold.
    pub max_entries: usize,
    /// The largest single image file, in bytes.
    pub max_image_bytes: u64,
    /// The widest and tallest an image may be, in pixels.
    pub max_image_side: u32,
    /// The most numbers the resulting table may hold (images x channels x height x width);
    /// each is an f32 in memory and on disk.
    pub max_table_values: u64,
    /// The fewest images a data set must have.
    pub min_images: usize,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_expanded_bytes: 512 * 1024 * 1024,
            max_entries: 200_000,
            max_image_bytes: 32 * 1024 * 1024,
            max_image_side: 4096,
            max_table_values: 1 << 29,
            min_images: 10,
        }
    }
}

/// The largest side `image_size` may ask for.
pub(crate) const MAX_IMAGE_SIZE: u32 = 1024;

/// How to turn the archive's images into rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageOptions {
    /// Width and height to resize every image to; `None` keeps the size all images share.
    pub size: Option<(u32, u32)>,
    /// 1 (grayscale) or 3 (RGB); `None` picks 1 when every image is grayscale, else 3.
    pub channels: Option<usize>,
}

impl ImageOptions {
    /// Parses the upload's optional `image_size` (`32` or `WIDTHxHEIGHT` such as `32x24`) and
    /// `channels` (`1` or `3`) parts; errors name the part.
    pub fn parse(image_size: Option<&str>, channels: Option<&str>) -> Result<Self> {
        let size = match image_size.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(text) => Some(parse_size(text)?),
        };
        let channels = match channels.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some("1") => Some(1),
            Some("3") => Some(3),
            Some(other) => {
                return Err(DataError::invalid(
                    Input::Option("channels"),
                    format!(
                        "'{}' is not a channel count; use 1 (grayscale) or 3 (RGB)",
                        shown(other)
                    ),
                ));
            }
        };
        Ok(ImageOptions { size, channels })
    }
}

fn parse_size(text: &str) -> Result<(u32, u32)> {
    let invalid = || {
        DataError::invalid(
            Input::Option("image_size"),
            format!(
                "'{}' is not an image size; use one number for square images (e.g. 32) or \
                 WIDTHxHEIGHT (e.g. 32x24), each from 1 to {MAX_IMAGE_SIZE}",
                shown(text)
            ),
        )
    };
    let lower = text.to_ascii_lowercase();
    let (w, h) = match lower.split_once('x') {
        Some((w, h)) => (w.trim(), h.trim()),
        None => (lower.as_str(), lower.as_str()),
    };
    let (w, h) = match (w.parse::<u32>(), h.parse::<u32>()) {
        (Ok(w), Ok(h)) => (w, h),
        _ => return Err(invalid()),
    };
    if !(1..=MAX_IMAGE_SIZE).contains(&w) || !(1..=MAX_IMAGE_SIZE).contains(&h) {
        return Err(invalid());
    }
    Ok((w, h))
}

/// Reads an image archive (zip, tar or tar.gz, told apart by their first bytes) with one folder
/// per class, optionally under `train/`, `val/` and `test/`, into a table: one row per image,
/// resized to one size, `C x H x W` values in [0, 1], string labels from the folder names
/// (sorted), `image_shape = [C, H, W]`, and the split when the archive has one. Rows are in
/// (split, class, path) order, whatever the archive's order.
///
/// Every rejection is an [`DataError::Invalid`] on field `archive` that names the entry at fault.
/// Hidden files and folders (names starting with `.`) and `__MACOSX`, `Thumbs.db` and
/// `desktop.ini` are skipped; any other file that is not `.png`, `.jpg` or `.jpeg` is rejected.
pub fn parse_image_archive(
    bytes: &[u8],
    options: &ImageOptions,
    limits: &ImageLimits,
) -> Result<Table> {
    read_image_archive(std::io::Cursor::new(bytes), options, limits)
}

/// [`parse_image_archive`] from a reader (an uploaded file), read twice from its start.
pub fn read_image_archive<R: Read + Seek>(
    mut reader: R,
    options: &ImageOptions,
    limits: &ImageLimits,
) -> Result<Table> {
    let mut files = Vec::new();
    archive::for_each_image(&mut reader, limits, &mut |name, path, bytes| {
        let header = decode::read_header(name, bytes, limits)?;
        let ordinal = files.len();
        files.push(ArchiveFile {
            name: name.to_owned(),
            path,
            ordinal,
            header,
        });
        Ok(())
    })?;
    let layout = layout::arrange(files, limits)?;
    decode::into_table(layout, options, limits, |visit| {
        archive::for_each_image(&mut reader, limits, visit)
    })
}

/// The error every archive rejection is.
fn reject(message: impl Into<String>) -> DataError {
    DataError::in_part("archive", message)
}

/// User text (an entry name, a folder) cut and escaped for an error message.
fn shown(text: &str) -> String {
    const MAX: usize = 120;
    let cut: String = text.chars().take(MAX).collect();
    let mut out: String = cut.escape_debug().collect();
    if text.chars().nth(MAX).is_some() {
        out.push_str("...");
    }
    out
}
