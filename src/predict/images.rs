//! Images sent for prediction (base64 in JSON, or multipart parts): decoded like uploads into
//! rows of the job's data set shape.

use crate::error::{Error, Result};
use data::{ImageLimits, decode_image_row};
use engine::Preprocessing;

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
    use proptest::prelude::*;

    /// Standard base64 with padding, the alphabet the decoder must accept.
    fn encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// The `digits` data set's shape: 8x8 grey images, pixels 0 to 16.
    fn digits() -> Preprocessing {
        Preprocessing {
            feature_names: (0..64).map(|i| format!("pixel_{i}")).collect(),
            standardizer: None,
            labels: (0..10).map(|i| serde_json::json!(i)).collect(),
            image_shape: Some([1, 8, 8]),
            pixel_max: 16.0,
            image: None,
        }
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image =
            image::GrayImage::from_fn(width, height, |x, y| image::Luma([(x * 31 + y * 7) as u8]));
        let mut bytes = Vec::new();
        image
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .unwrap();
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn base64_of_any_bytes_decodes_back(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(decode_base64(&encode(&bytes)).unwrap(), bytes);
        }

        #[test]
        fn decoding_any_text_as_base64_never_panics(text in any::<String>()) {
            let _ = decode_base64(&text);
        }

        #[test]
        fn any_bytes_as_an_image_give_a_row_or_a_422_naming_the_item(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let images = [ImageInput { field: "images[0]".into(), bytes }];
            match image_rows(&images, &digits()) {
                Ok(rows) => prop_assert_eq!(rows[0].len(), 64),
                Err(Error::Invalid { field, .. }) => prop_assert_eq!(field, "images[0]"),
                Err(other) => prop_assert!(false, "not a 422: {other}"),
            }
        }

        #[test]
        fn a_damaged_png_gives_a_row_or_a_422(
            side in prop_oneof![Just(8u32), 1u32..20],
            damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = png(side, side);
            for (at, value) in damage {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            bytes.truncate(cut.index(bytes.len()) + 1);
            let images = [ImageInput { field: "image[0]".into(), bytes }];
            match image_rows(&images, &digits()) {
                Ok(rows) => {
                    prop_assert_eq!(rows[0].len(), 64);
                    prop_assert!(rows[0].iter().all(|v| (0.0..=16.0).contains(v)));
                }
                Err(Error::Invalid { field, .. }) => prop_assert_eq!(field, "image[0]"),
                Err(other) => prop_assert!(false, "not a 422: {other}"),
            }
        }
    }

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("data:image/png;base64,aGk=").unwrap(), b"hi");
        assert!(decode_base64("a*b").is_err());
    }
}
