//! Data sets compiled into the binary.

use std::sync::OnceLock;

use super::Table;
use super::csv::{CsvLimits, parse_csv};

const DIGITS_CSV: &str = include_str!("../../../data/digits.csv");

/// The built-in `digits` data set (UCI optical digits, 1,797 rows of 8x8 pixels), compiled into
/// the binary: features `pixel0`..`pixel63` (0 to 16, row-major), integer labels 0 to 9, image
/// shape `[1, 8, 8]`, `pixel_max` 16 (so as images, pixels are the values divided by 16).
pub fn digits() -> Table {
    static DIGITS: OnceLock<Table> = OnceLock::new();
    DIGITS
        .get_or_init(|| {
            let mut table = parse_csv(
                "digits",
                DIGITS_CSV.as_bytes(),
                "label",
                &CsvLimits::default(),
            )
            .expect("the built-in digits.csv does not parse; this is a bug in the build");
            table.image_shape = Some([1, 8, 8]);
            table.pixel_max = 16.0;
            table
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LabelKind;

    #[test]
    fn digits_has_1797_images_of_64_pixels_in_ten_balanced_classes() {
        let t = digits();
        assert_eq!(t.n_rows(), 1797);
        assert_eq!(t.n_features(), 64);
        assert_eq!(t.feature_names[0], "pixel0");
        assert_eq!(t.feature_names[63], "pixel63");
        assert_eq!(t.image_shape, Some([1, 8, 8]));
        assert_eq!(t.pixel_max, 16.0);
        assert_eq!(t.label_kind, LabelKind::Integer);
        assert_eq!(
            t.classes,
            (0..10).map(|c| c.to_string()).collect::<Vec<_>>()
        );
        assert!(
            t.class_counts().iter().all(|&n| (170..=190).contains(&n)),
            "{:?}",
            t.class_counts()
        );
        assert!(t.features.iter().all(|&x| (0.0..=16.0).contains(&x)));
        assert!(t.splits.is_none());
    }
}
