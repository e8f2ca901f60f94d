//! Archives that are rejected, each with a message naming what is wrong.

use std::io::{Cursor, Write};

use tar::EntryType;
use zip::write::SimpleFileOptions;

use super::*;

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "{message:?} does not mention {part:?}"
        );
    }
}

/// A valid class layout plus one more entry.
fn with_extra(name: &str, bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut files = class_files("", &["cat", "dog"], 5);
    files.push((name.to_owned(), bytes.to_vec()));
    files
}

#[test]
fn path_traversal_and_absolute_names_are_rejected_by_name() {
    let image = png(8, 8, [1, 2, 3]);
    for name in [
        "../evil.png",
        "cat/../../evil.png",
        "cat/..",
        "/etc/cat/evil.png",
        "C:/cat/evil.png",
        "c:evil.png",
        "cat\\..\\evil.png",
        "\\\\server\\share\\evil.png",
        "cat/evil\u{0}.png",
    ] {
        for archive in [
            zip_of(&with_extra(name, &image)),
            tar_of(&with_extra(name, &image)),
        ] {
            let message = rejection(read(&archive));
            // Tar names end at a NUL, and the zip reader cuts them there too: what is left
            // ("cat/evil") is still refused, as a file that is not an image.
            let shown = match name.split_once('\0') {
                Some((before, _)) => before.to_owned(),
                None => name.escape_debug().to_string(),
            };
            assert_mentions(&message, &[&shown]);
        }
    }
}

#[test]
fn links_and_devices_are_rejected_even_when_their_target_looks_harmless() {
    let image = png(8, 8, [1, 2, 3]);
    for (kind, what) in [
        (EntryType::Symlink, "symbolic link"),
        (EntryType::Link, "hard link"),
        (EntryType::Char, "character device"),
        (EntryType::Block, "block device"),
        (EntryType::Fifo, "named pipe"),
    ] {
        let mut entries: Vec<(&str, EntryType, &[u8])> = vec![
            ("cat/1.png", EntryType::Regular, &image),
            ("dog/1.png", EntryType::Regular, &image),
        ];
        entries.push(("cat/link.png", kind, b""));
        let message = rejection(read(&tar_entries(&entries)));
        assert_mentions(&message, &["cat/link.png", what]);
    }

    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in class_files("", &["cat", "dog"], 5) {
        zip.start_file(name, SimpleFileOptions::default()).unwrap();
        zip.write_all(&bytes).unwrap();
    }
    zip.add_symlink(
        "cat/passwd.png",
        "/etc/passwd",
        SimpleFileOptions::default(),
    )
    .unwrap();
    let message = rejection(read(&zip.finish().unwrap().into_inner()));
    assert_mentions(&message, &["cat/passwd.png", "symbolic link"]);
}

/// A zip with one entry of `size` zero bytes, written in chunks so the test itself never holds
/// it whole; it compresses about a thousandfold.
fn zip_bomb(size: usize) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in class_files("", &["cat", "dog"], 5) {
        zip.start_file(name, SimpleFileOptions::default()).unwrap();
        zip.write_all(&bytes).unwrap();
    }
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1));
    zip.start_file("cat/bomb.png", options).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..size / chunk.len() {
        zip.write_all(&chunk).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

#[test]
fn a_zip_bomb_is_stopped_by_the_bytes_it_actually_expands_to() {
    let bomb = zip_bomb(100 << 20);
    assert!(bomb.len() < 1 << 20, "the bomb is {} bytes", bomb.len());
    // The total limit stops it ...
    let limits = ImageLimits {
        max_expanded_bytes: 8 << 20,
        ..ImageLimits::default()
    };
    let message = rejection(parse_image_archive(
        &bomb,
        &ImageOptions::default(),
        &limits,
    ));
    assert_mentions(
        &message,
        &["expands to more than 8388608 bytes", "cat/bomb.png"],
    );
    // ... and so does the per-image limit, long before 100 MB.
    let message = rejection(read(&bomb));
    assert_mentions(&message, &["cat/bomb.png", "larger than 33554432 bytes"]);
}

#[test]
fn a_tar_gz_bomb_is_stopped_even_inside_entries_that_would_be_skipped() {
    let zeros = vec![0u8; 64 << 20];
    let mut entries: Vec<(&str, EntryType, &[u8])> = Vec::new();
    let files = class_files("", &["cat", "dog"], 5);
    entries.extend(
        files
            .iter()
            .map(|(n, b)| (n.as_str(), EntryType::Regular, b.as_slice())),
    );
    entries.push((".hidden-padding", EntryType::Regular, &zeros));
    let bomb = gzip(&tar_entries(&entries));
    drop(zeros);
    assert!(bomb.len() < 1 << 20);
    let limits = ImageLimits {
        max_expanded_bytes: 16 << 20,
        ..ImageLimits::default()
    };
    let message = rejection(parse_image_archive(
        &bomb,
        &ImageOptions::default(),
        &limits,
    ));
    assert_mentions(
        &message,
        &["expands to more than 16777216 bytes", ".hidden-padding"],
    );
}

#[test]
fn many_entries_each_under_the_image_limit_add_up_to_the_total_limit() {
    let mut files = class_files("", &["cat", "dog"], 5);
    for i in 0..12 {
        // A valid image header (headers are read as entries arrive), then 1 MiB of padding.
        let mut padded = png(8, 8, [1, 2, 3]);
        padded.resize(1 << 20, 0);
        files.push((format!("cat/pad{i}.png"), padded));
    }
    let limits = ImageLimits {
        max_expanded_bytes: 8 << 20,
        max_image_bytes: 2 << 20,
        ..ImageLimits::default()
    };
    let message = rejection(parse_image_archive(
        &zip_of(&files),
        &ImageOptions::default(),
        &limits,
    ));
    assert_mentions(&message, &["expands to more than", "cat/pad"]);
}

#[test]
fn too_many_entries_are_rejected_before_and_while_reading() {
    let files = class_files("", &["cat", "dog"], 6);
    let limits = ImageLimits {
        max_entries: 10,
        ..ImageLimits::default()
    };
    for archive in [zip_of(&files), tar_of(&files)] {
        let message = rejection(parse_image_archive(
            &archive,
            &ImageOptions::default(),
            &limits,
        ));
        assert_mentions(&message, &["entries", "10"]);
    }
}

#[test]
fn a_zip_declaring_many_entries_is_refused_before_its_directory_is_read() {
    let mut archive = zip_of(&class_files("", &["cat", "dog"], 5));
    let end = archive.len() - 22;
    assert_eq!(&archive[end..end + 4], b"PK\x05\x06");
    // Claim 65,000 entries in the end record (both counts), as a crafted archive could.
    for offset in [8, 10] {
        archive[end + offset..end + offset + 2].copy_from_slice(&65_000u16.to_le_bytes());
    }
    let limits = ImageLimits {
        max_entries: 1000,
        ..ImageLimits::default()
    };
    let message = rejection(parse_image_archive(
        &archive,
        &ImageOptions::default(),
        &limits,
    ));
    assert_mentions(&message, &["65000 entries", "at most 1000"]);
    // Within the limit, the lie is found when the directory is read.
    assert_mentions(&rejection(read(&archive)), &["corrupt"]);
}

#[test]
fn an_image_over_the_pixel_or_byte_limit_is_named() {
    let files = with_extra("dog/huge.png", &png(40, 8, [0, 0, 0]));
    let limits = ImageLimits {
        max_image_side: 32,
        ..ImageLimits::default()
    };
    let options = ImageOptions::parse(Some("8"), None).unwrap();
    let message = rejection(parse_image_archive(&zip_of(&files), &options, &limits));
    assert_mentions(&message, &["dog/huge.png", "40x8", "at most 32x32"]);

    let limits = ImageLimits {
        max_image_bytes: 100,
        ..ImageLimits::default()
    };
    let files = with_extra("dog/huge.png", &png(64, 64, [0, 0, 0]));
    let message = rejection(parse_image_archive(&tar_of(&files), &options, &limits));
    assert_mentions(&message, &["larger than 100 bytes"]);
}

#[test]
fn undecodable_and_unsupported_files_are_named() {
    let message = rejection(read(&zip_of(&with_extra(
        "dog/broken.png",
        b"\x89PNG\r\n\x1a\nnope",
    ))));
    assert_mentions(&message, &["dog/broken.png", "could not be decoded"]);
    let truncated = &png(8, 8, [5, 5, 5])[..40];
    let message = rejection(read(&tar_of(&with_extra("cat/cut.png", truncated))));
    assert_mentions(&message, &["cat/cut.png", "could not be decoded"]);
    let message = rejection(read(&zip_of(&with_extra("cat/notes.txt", b"hello"))));
    assert_mentions(&message, &["cat/notes.txt", "not a PNG or JPEG"]);
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    let message = rejection(read(&zip_of(&with_extra("cat/anim.gif", gif))));
    assert_mentions(&message, &["cat/anim.gif"]);
}

#[test]
fn layouts_that_do_not_give_two_classes_are_explained() {
    let one = class_files("", &["cat"], 12);
    assert_mentions(
        &rejection(read(&zip_of(&one))),
        &["only one class folder", "'cat'"],
    );
    let loose = with_extra("loose.png", &png(8, 8, [0, 0, 0]));
    assert_mentions(
        &rejection(read(&zip_of(&loose))),
        &["loose.png", "not in a class folder"],
    );
    let deep = with_extra("cat/kittens/1.png", &png(8, 8, [0, 0, 0]));
    assert_mentions(
        &rejection(read(&zip_of(&deep))),
        &["cat/kittens/1.png", "nested too deep"],
    );
    let few = class_files("", &["cat", "dog"], 2);
    assert_mentions(
        &rejection(read(&zip_of(&few))),
        &["4 images", "at least 10"],
    );
    let empty = zip_of(&[
        ("cat/".to_owned(), Vec::new()),
        ("cat/notes/".to_owned(), Vec::new()),
    ]);
    assert_mentions(&rejection(read(&empty)), &["no .png, .jpg or .jpeg images"]);
}

#[test]
fn splits_need_val_and_no_class_unknown_to_train() {
    let mut files = class_files("train/", &["cat", "dog"], 5);
    files.extend(class_files("test/", &["cat", "dog"], 2));
    assert_mentions(&rejection(read(&zip_of(&files))), &["no images under val/"]);
    files.extend(class_files("val/", &["cat", "dog", "eel"], 2));
    assert_mentions(
        &rejection(read(&zip_of(&files))),
        &["val/eel/0.png", "'eel'"],
    );
    let mut mixed = class_files("train/", &["cat", "dog"], 5);
    mixed.extend(class_files("val/", &["cat", "dog"], 2));
    mixed.extend(class_files("", &["owl"], 1));
    assert_mentions(
        &rejection(read(&zip_of(&mixed))),
        &["owl/0.png", "outside train/"],
    );
}

#[test]
fn other_formats_and_garbage_are_rejected_and_nothing_panics_on_a_cut_archive() {
    for (bytes, expected) in [
        (&b""[..], "empty"),
        (b"BZh91AY&SY", "bzip2"),
        (b"hello, world", "not a zip, tar or tar.gz"),
        (b"\x1f\x8b\x08\x00garbage", "corrupt"),
        (b"PK\x03\x04garbage", "corrupt"),
    ] {
        assert_mentions(&rejection(read(bytes)), &[expected]);
    }
    let files = class_files("", &["cat", "dog"], 5);
    for archive in [zip_of(&files), gzip(&tar_of(&files)), tar_of(&files)] {
        for cut in (0..archive.len()).step_by(97) {
            // Any answer but a panic; most cuts are rejections.
            let _ = read(&archive[..cut]);
        }
    }
}

#[test]
fn a_duplicate_entry_and_a_table_too_large_are_rejected() {
    let mut files = class_files("", &["cat", "dog"], 5);
    files.push(("./cat/0.png".into(), png(8, 8, [0, 0, 0])));
    assert_mentions(
        &rejection(read(&tar_of(&files))),
        &["cat/0.png", "appears twice"],
    );
    let files = class_files("", &["cat", "dog"], 5);
    let limits = ImageLimits {
        max_table_values: 1000,
        ..ImageLimits::default()
    };
    let message = rejection(parse_image_archive(
        &zip_of(&files),
        &ImageOptions::default(),
        &limits,
    ));
    assert_mentions(&message, &["10 images of 3x8x8", "smaller image_size"]);
}
