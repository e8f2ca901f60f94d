//! Archives built in memory, with images drawn by the `image` crate.

mod properties;
mod reading;
mod rejecting;

use std::io::{Cursor, Write};

use image::{DynamicImage, ImageFormat, RgbImage};
use zip::write::SimpleFileOptions;

use super::*;

/// A `w x h` picture: `colour` with a faint gradient, so images are not all alike.
pub(crate) fn picture(w: u32, h: u32, colour: [u8; 3]) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        let shade = ((x + y) % 4) as u8 * 4;
        image::Rgb(colour.map(|c| c.saturating_add(shade)))
    }))
}

pub(crate) fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

pub(crate) fn png(w: u32, h: u32, colour: [u8; 3]) -> Vec<u8> {
    encode(&picture(w, h, colour), ImageFormat::Png)
}

pub(crate) fn gray_png(w: u32, h: u32, level: u8) -> Vec<u8> {
    encode(
        &DynamicImage::ImageLuma8(picture(w, h, [level; 3]).to_luma8()),
        ImageFormat::Png,
    )
}

/// `per_class` PNG files of 8x8 under `<prefix><class>/`, one colour per class.
pub(crate) fn class_files(
    prefix: &str,
    classes: &[&str],
    per_class: usize,
) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for (c, class) in classes.iter().enumerate() {
        for i in 0..per_class {
            let colour = [(c * 80) as u8, 40, (i * 10) as u8];
            files.push((format!("{prefix}{class}/{i}.png"), png(8, 8, colour)));
        }
    }
    files
}

pub(crate) fn zip_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in files {
        if name.ends_with('/') {
            zip.add_directory(name.as_str(), SimpleFileOptions::default())
                .unwrap();
        } else {
            zip.start_file(name.as_str(), SimpleFileOptions::default())
                .unwrap();
            zip.write_all(bytes).unwrap();
        }
    }
    zip.finish().unwrap().into_inner()
}

/// A tar with names written into the headers as they are (the `tar` crate's own builder
/// refuses unsafe names, which these tests need).
pub(crate) fn tar_entries(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        let raw = &mut header.as_gnu_mut().unwrap().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        if *kind == tar::EntryType::Symlink || *kind == tar::EntryType::Link {
            header.set_link_name("../../etc/passwd").unwrap();
        }
        header.set_cksum();
        builder.append(&header, *bytes).unwrap();
    }
    builder.into_inner().unwrap()
}

pub(crate) fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let entries: Vec<(&str, tar::EntryType, &[u8])> = files
        .iter()
        .map(|(name, bytes)| (name.as_str(), tar::EntryType::Regular, bytes.as_slice()))
        .collect();
    tar_entries(&entries)
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

pub(crate) fn read(bytes: &[u8]) -> Result<Table> {
    parse_image_archive(bytes, &ImageOptions::default(), &ImageLimits::default())
}

/// The message of an `archive` rejection.
pub(crate) fn rejection(result: Result<Table>) -> String {
    match result {
        Err(DataError::Invalid { input, message }) if input.to_string() == "archive" => message,
        Err(other) => panic!("expected a rejection of the archive, got {other:?}"),
        Ok(table) => panic!(
            "expected a rejection, got a table of {} rows",
            table.n_rows()
        ),
    }
}
