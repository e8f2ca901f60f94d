//! Operations on one image stored planar (`C x H x W`, f32): resize, crops, flip, per-channel
//! statistics and normalization. The pieces [`super::image_prep`] chains into a pipeline.

use image::imageops::{FilterType, resize as resize_plane};
use image::{ImageBuffer, Luma};

/// `[channels, height, width]`.
pub(crate) type Shape = [usize; 3];

/// Resizes every channel to `[height, width]` with the `image` crate's triangle (bilinear)
/// filter, which averages over the whole footprint when shrinking, as uploads are resized.
/// Values must lie in [0, 1] (the filter clamps to that range). The same size is a copy.
pub(crate) fn resize(image: &[f32], [c, h, w]: Shape, [nh, nw]: [usize; 2]) -> Vec<f32> {
    if [h, w] == [nh, nw] {
        return image.to_vec();
    }
    let mut out = Vec::with_capacity(c * nh * nw);
    for plane in image.chunks_exact(h * w) {
        let source: ImageBuffer<Luma<f32>, Vec<f32>> =
            ImageBuffer::from_raw(w as u32, h as u32, plane.to_vec())
                .expect("a plane of h*w values makes an h x w image");
        let resized = resize_plane(&source, nw as u32, nh as u32, FilterType::Triangle);
        out.extend_from_slice(resized.as_raw());
    }
    out
}

/// The `[ch, cw]` window at the centre (rounded up and left when the margin is odd).
pub(crate) fn center_crop(image: &[f32], shape: Shape, size: [usize; 2]) -> Vec<f32> {
    let [_, h, w] = shape;
    let (top, left) = ((h - size[0]) / 2, (w - size[1]) / 2);
    let mut out = Vec::with_capacity(shape[0] * size[0] * size[1]);
    crop_padded(image, shape, (top, left), size, 0, &[], &mut out);
    out
}

/// Appends the `[ch, cw]` window whose top-left corner is at `(top, left)` of the image padded
/// by `padding` on every side; padded pixels of channel `k` are `fill[k]`.
pub(crate) fn crop_padded(
    image: &[f32],
    [c, h, w]: Shape,
    (top, left): (usize, usize),
    [ch, cw]: [usize; 2],
    padding: usize,
    fill: &[f32],
    out: &mut Vec<f32>,
) {
    for k in 0..c {
        let plane = &image[k * h * w..(k + 1) * h * w];
        for y in 0..ch {
            let sy = (top + y).checked_sub(padding).filter(|&sy| sy < h);
            for x in 0..cw {
                let sx = (left + x).checked_sub(padding).filter(|&sx| sx < w);
                out.push(match (sy, sx) {
                    (Some(sy), Some(sx)) => plane[sy * w + sx],
                    _ => fill[k],
                });
            }
        }
    }
}

/// Mirrors the image left to right, in place.
pub(crate) fn flip_horizontal(image: &mut [f32], [_, _, w]: Shape) {
    for row in image.chunks_exact_mut(w) {
        row.reverse();
    }
}

/// Repeats a 1-channel image into 3 identical channels.
pub(crate) fn gray_to_rgb(image: &[f32]) -> Vec<f32> {
    image.repeat(3)
}

/// Mean and standard deviation (population) of each channel over all the images; a channel
/// with no spread gets a standard deviation of 1, so normalizing it only centres it.
pub(crate) fn channel_stats<'a>(
    images: impl Iterator<Item = &'a [f32]>,
    [c, h, w]: Shape,
) -> (Vec<f32>, Vec<f32>) {
    let mut sums = vec![(0f64, 0f64); c];
    let mut count = 0usize;
    for image in images {
        for (k, plane) in image.chunks_exact(h * w).enumerate() {
            for &v in plane {
                sums[k].0 += f64::from(v);
                sums[k].1 += f64::from(v) * f64::from(v);
            }
        }
        count += h * w;
    }
    let n = count.max(1) as f64;
    sums.iter()
        .map(|&(sum, squares)| {
            let mean = sum / n;
            let std = (squares / n - mean * mean).max(0.0).sqrt();
            (mean as f32, if std > 1e-6 { std as f32 } else { 1.0 })
        })
        .unzip()
}

/// `(x - mean[k]) / std[k]` for every value of channel `k`, in place.
pub(crate) fn normalize(image: &mut [f32], [_, h, w]: Shape, mean: &[f32], std: &[f32]) {
    for (k, plane) in image.chunks_exact_mut(h * w).enumerate() {
        let (m, s) = (mean[k], std[k]);
        for v in plane {
            *v = (*v - m) / s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2-channel 3x4 image whose value encodes channel, row and column: 100k + 10y + x.
    fn coded() -> Vec<f32> {
        (0..2)
            .flat_map(|k| {
                (0..3).flat_map(move |y| (0..4).map(move |x| (100 * k + 10 * y + x) as f32))
            })
            .collect()
    }

    #[test]
    fn resizing_keeps_a_constant_image_constant_and_the_same_size_unchanged() {
        let flat = vec![0.25; 3 * 10 * 6];
        let out = resize(&flat, [3, 10, 6], [4, 5]);
        assert_eq!(out.len(), 3 * 4 * 5);
        assert!(out.iter().all(|v| (v - 0.25).abs() < 1e-6), "{out:?}");
        let ramp: Vec<f32> = (0..16).map(|i| i as f32 / 15.0).collect();
        assert_eq!(resize(&ramp, [1, 4, 4], [4, 4]), ramp);
    }

    #[test]
    fn resizing_interpolates_between_neighbours_and_averages_when_shrinking() {
        // A left-to-right ramp stays a ramp: increasing along each row, equal down the columns.
        let ramp: Vec<f32> = (0..4 * 8).map(|i| (i % 8) as f32 / 7.0).collect();
        let up = resize(&ramp, [1, 4, 8], [4, 16]);
        for row in up.chunks(16) {
            assert!(row.windows(2).all(|p| p[1] >= p[0]), "{row:?}");
            assert_eq!(row, &up[..16]);
        }
        // Two pixels upsampled to four: the outer ones keep their values, the inner ones blend.
        let two = resize(&[0.0, 1.0], [1, 1, 2], [1, 4]);
        assert_eq!(two[0], 0.0);
        assert_eq!(two[3], 1.0);
        assert!(
            (two[1] - 0.25).abs() < 1e-6 && (two[2] - 0.75).abs() < 1e-6,
            "{two:?}"
        );
        // Halving a checkerboard of 0 and 1 averages to one half everywhere but the border.
        let board: Vec<f32> = (0..64).map(|i| ((i / 8 + i % 8) % 2) as f32).collect();
        let half = resize(&board, [1, 8, 8], [4, 4]);
        assert!((half[5] - 0.5).abs() < 0.05, "{half:?}");
    }

    #[test]
    fn a_center_crop_takes_the_middle_window_of_every_channel() {
        let out = center_crop(&coded(), [2, 3, 4], [1, 2]);
        assert_eq!(out, vec![11.0, 12.0, 111.0, 112.0]);
    }

    #[test]
    fn a_padded_crop_fills_outside_the_image_with_each_channels_fill() {
        let mut out = Vec::new();
        crop_padded(
            &coded(),
            [2, 3, 4],
            (0, 0),
            [2, 3],
            1,
            &[-1.0, -2.0],
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                -1.0, -1.0, -1.0, -1.0, 0.0, 1.0, -2.0, -2.0, -2.0, -2.0, 100.0, 101.0
            ]
        );
        let mut corner = Vec::new();
        crop_padded(
            &coded(),
            [2, 3, 4],
            (3, 4),
            [2, 2],
            1,
            &[-1.0, -2.0],
            &mut corner,
        );
        assert_eq!(
            corner,
            vec![23.0, -1.0, -1.0, -1.0, 123.0, -2.0, -2.0, -2.0]
        );
    }

    #[test]
    fn flipping_mirrors_each_row_and_twice_is_the_identity() {
        let mut image = coded();
        flip_horizontal(&mut image, [2, 3, 4]);
        assert_eq!(&image[..4], &[3.0, 2.0, 1.0, 0.0]);
        assert_eq!(&image[12..16], &[103.0, 102.0, 101.0, 100.0]);
        flip_horizontal(&mut image, [2, 3, 4]);
        assert_eq!(image, coded());
    }

    #[test]
    fn normalizing_with_fitted_stats_gives_zero_mean_and_unit_spread_per_channel() {
        let images = [vec![0.0, 1.0, 0.5, 0.5], vec![1.0, 0.0, 0.5, 0.5]];
        let (mean, std) = channel_stats(images.iter().map(Vec::as_slice), [2, 1, 2]);
        assert_eq!(mean, vec![0.5, 0.5]);
        assert_eq!(std, vec![0.5, 1.0], "the constant channel keeps std 1");
        let mut first = images[0].clone();
        normalize(&mut first, [2, 1, 2], &mean, &std);
        assert_eq!(first, vec![-1.0, 1.0, 0.0, 0.0]);
        assert_eq!(gray_to_rgb(&[0.1, 0.2]), vec![0.1, 0.2, 0.1, 0.2, 0.1, 0.2]);
    }
}
