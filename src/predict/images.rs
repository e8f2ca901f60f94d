//! Images sent for prediction (base64 in JSON, or multipart parts): decoded like uploads into
//! rows of the job's data set shape.

use crate::error::{Error, Result};
use crate::train::Preprocessing;
use crate::train::dataset::{ImageLimits, decode_image_row};

/// One image of a request and the name to blame it by (`images[2]`, `image[0]`).
pub struct ImageInput {
    /// The item's name in errors.
    pub field: String,
    /// The encoded image (PNG or JPEG).
    pub bytes: Vec<u8>,
}

/// Decodes base64 (standard or URL-safe alphabet, padding optional, whitespace ignored; a
/// `data:...;base64,` prefix is skipped).
pub fn decode_base64(text: &str) -> std::result::Result<Vec<u8>, String> {
    let text = match text.split_once(";base64,") {
        Some((prefix, rest)) if prefix.starts_with("data:") => rest,
        _ => text,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for (i, c) in text.bytes().enumerate() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return Err(format!("is not base64: unexpected character at {i}")),
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// Rows of raw pixel values (before the job's preprocessing) for each image: decoded to
/// [0, 1] at the data set's channels and size (resized only when the job declares a resize,
/// else an image of another size is refused), then scaled to the data set's units (`digits`:
/// 0 to 16). A 422 naming the first item that is not such an image, or when the job's data
/// set has no images.
pub fn image_rows(images: &[ImageInput], preprocessing: &Preprocessing) -> Result<Vec<Vec<f64>>> {
    let shape = preprocessing.dataset_image_shape().ok_or_else(|| {
        Error::invalid(
            "images",
            "this model was not trained on images; send rows as 'inputs'",
        )
    })?;
    let limits = ImageLimits::default();
    let scale = f64::from(preprocessing.pixel_max);
    images
        .iter()
        .map(|image| {
            if image.bytes.len() as u64 > limits.max_image_bytes {
                return Err(Error::invalid(
                    image.field.clone(),
                    format!(
                        "{} is {} bytes; images may be at most {}",
                        image.field,
                        image.bytes.len(),
                        limits.max_image_bytes
                    ),
                ));
            }
            decode_image_row(
                &image.bytes,
                shape,
                limits.max_image_side,
                preprocessing.resizes(),
            )
            .map(|row| row.into_iter().map(|v| f64::from(v) * scale).collect())
            .map_err(|why| Error::invalid(image.field.clone(), format!("{} {why}", image.field)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("data:image/png;base64,aGk=").unwrap(), b"hi");
        assert!(decode_base64("a*b").is_err());
    }
}
