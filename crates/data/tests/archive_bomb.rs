//! A zip bomb is rejected without its expanded bytes ever being held in memory: a counting
//! allocator records the peak heap while the archive is read. This is its own test binary so
//! that no other test allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Cursor, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use data::{DataError, ImageLimits, ImageOptions, Input, parse_image_archive};
use zip::write::SimpleFileOptions;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, which `System.alloc` shares.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: usize = 1 << 20;

/// Two small class folders and one entry of `size` zero bytes, deflated (about 1000:1).
fn zip_bomb(size: usize) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let png = {
        let mut out = Cursor::new(Vec::new());
        image::DynamicImage::new_rgb8(4, 4)
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        out.into_inner()
    };
    for class in ["a", "b"] {
        for i in 0..5 {
            zip.start_file(format!("{class}/{i}.png"), SimpleFileOptions::default())
                .unwrap();
            zip.write_all(&png).unwrap();
        }
    }
    let deflated = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(9))
        .large_file(size >= u32::MAX as usize);
    zip.start_file("a/bomb.png", deflated).unwrap();
    let chunk = vec![0u8; MIB];
    for _ in 0..size / MIB {
        zip.write_all(&chunk).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// Reads the archive and returns the rejection message and the peak heap growth meanwhile.
fn peak_while_reading(bomb: &[u8], limits: &ImageLimits) -> (String, usize) {
    let before = CURRENT.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let result = parse_image_archive(bomb, &ImageOptions::default(), limits);
    let peak = PEAK.load(Ordering::SeqCst) - before;
    eprintln!(
        "a {} KiB bomb, limits {limits:?}: peak heap growth {:.1} MiB",
        bomb.len() / 1024,
        peak as f64 / MIB as f64
    );
    match result {
        Err(DataError::Invalid {
            input: Input::Part(part),
            message,
        }) if part == "archive" => (message, peak),
        other => panic!("expected a rejection, got {:?}", other.map(|t| t.n_rows())),
    }
}

#[test]
fn a_zip_bomb_is_rejected_without_allocating_what_it_expands_to() {
    let expanded = 1024 * MIB;
    let bomb = zip_bomb(expanded);
    assert!(bomb.len() < 2 * MIB, "the bomb is {} bytes", bomb.len());

    // Default limits: the 32 MiB per-image limit stops it; the buffer never grows past that
    // (plus the old half while it grows), never to the 1 GiB the entry expands to.
    let (message, peak) = peak_while_reading(&bomb, &ImageLimits::default());
    assert!(
        message.contains("a/bomb.png") && message.contains("larger than"),
        "{message}"
    );
    assert!(peak < 56 * MIB, "peak heap growth {} MiB", peak / MIB);

    // A tight total limit stops it sooner, and the heap stays as small.
    let limits = ImageLimits {
        max_expanded_bytes: 4 * MIB as u64,
        ..ImageLimits::default()
    };
    let (message, peak) = peak_while_reading(&bomb, &limits);
    assert!(
        message.contains("expands to more than 4194304 bytes"),
        "{message}"
    );
    assert!(peak < 16 * MIB, "peak heap growth {} MiB", peak / MIB);
}
