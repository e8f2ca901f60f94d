//! Reading the image files out of a zip, tar or tar.gz archive, within [`ImageLimits`].
//!
//! Decompressed bytes are counted as they are read (never trusting sizes an archive declares),
//! so a zip bomb is stopped once it has produced `max_expanded_bytes`, and no buffer larger than
//! `max_image_bytes + 1` is ever allocated for one entry.

use std::cell::Cell;
use std::io::{self, Read, Seek, SeekFrom};

use super::{ImageLimits, layout, reject, shown};
use crate::error::{DataError, Result};

/// What is done with each image file of the archive: given the entry's name as the archive
/// writes it, its checked path (split into folders and file name, no empty, `.` or `..`
/// parts) and its bytes.
pub(super) type Visit<'v> = dyn FnMut(&str, Vec<String>, &[u8]) -> Result<()> + 'v;

/// Reads the archive from its start and hands every image file to `visit`, one at a time and
/// in archive order; rejects unsafe or unsupported entries by name. Only one image's bytes are
/// in memory at a time, so it can be called again for a second pass over the same archive.
pub(super) fn for_each_image<R: Read + Seek>(
    reader: &mut R,
    limits: &ImageLimits,
    visit: &mut Visit<'_>,
) -> Result<()> {
    let meter = Meter {
        used: Cell::new(0),
        max: limits.max_expanded_bytes,
    };
    let mut collector = Collector {
        limits,
        meter: &meter,
        visit,
        entries: 0,
        last: None,
    };
    reader.seek(SeekFrom::Start(0)).map_err(unreadable)?;
    let format = sniff(reader)?;
    reader.seek(SeekFrom::Start(0)).map_err(unreadable)?;
    match format {
        Format::Zip => read_zip(reader, &mut collector),
        Format::Tar => read_tar(Metered::new(reader, &meter), &mut collector),
        Format::TarGz => read_tar(
            Metered::new(flate2::read::MultiGzDecoder::new(reader), &meter),
            &mut collector,
        ),
    }
}

/// The uploaded archive could not be read back: the service's fault, not the user's.
fn unreadable(err: io::Error) -> DataError {
    DataError::internal("reading an uploaded archive", err)
}

enum Format {
    Zip,
    Tar,
    TarGz,
}

/// Tells the format from the first bytes; the file name the client sent is not trusted.
fn sniff<R: Read>(reader: &mut R) -> Result<Format> {
    let mut bytes = Vec::with_capacity(262);
    reader
        .take(262)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        Ok(Format::Zip)
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        Ok(Format::TarGz)
    } else if bytes.get(257..262) == Some(b"ustar") {
        Ok(Format::Tar)
    } else if bytes.is_empty() {
        Err(reject("the archive is empty"))
    } else {
        let other = if bytes.starts_with(b"BZh") {
            "a bzip2 file, "
        } else if bytes.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            "an xz file, "
        } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            "a zstd file, "
        } else if bytes.starts_with(b"7z\xbc\xaf") {
            "a 7z archive, "
        } else if bytes.starts_with(b"Rar!") {
            "a rar archive, "
        } else {
            ""
        };
        Err(reject(format!(
            "this is {other}not a zip, tar or tar.gz archive; pack the class folders with \
             e.g. `zip -r data.zip cat dog` or `tar czf data.tar.gz cat dog`"
        )))
    }
}

/// What an entry is, as far as the checks care.
enum Kind {
    File,
    Folder,
    /// A link or special file, described for the message ("a symbolic link").
    Refused(&'static str),
}

/// Counts decompressed bytes against the limit.
struct Meter {
    used: Cell<u64>,
    max: u64,
}

impl Meter {
    fn exceeded(&self) -> bool {
        self.used.get() > self.max
    }
}

/// A reader whose bytes count against a [`Meter`]; it fails once the meter is past its limit.
struct Metered<'m, R> {
    inner: R,
    meter: &'m Meter,
}

impl<'m, R> Metered<'m, R> {
    fn new(inner: R, meter: &'m Meter) -> Self {
        Metered { inner, meter }
    }
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.meter.exceeded() {
            return Err(io::Error::other("the expansion limit is reached"));
        }
        let n = self.inner.read(buf)?;
        let used = self.meter.used.get().saturating_add(n as u64);
        self.meter.used.set(used);
        if self.meter.exceeded() {
            return Err(io::Error::other("the expansion limit is reached"));
        }
        Ok(n)
    }
}

/// Applies the checks to each entry and hands the image files on.
struct Collector<'a, 'v> {
    limits: &'a ImageLimits,
    meter: &'a Meter,
    visit: &'a mut Visit<'v>,
    entries: usize,
    /// The last entry seen, to name where a failure between entries happened.
    last: Option<String>,
}

impl Collector<'_, '_> {
    /// Refuses an archive that says it holds more entries than allowed.
    fn check_total(&self, total: usize) -> Result<()> {
        if total > self.limits.max_entries {
            return Err(reject(format!(
                "the archive holds {total} entries (files and folders); at most {} are allowed",
                self.limits.max_entries
            )));
        }
        Ok(())
    }

    /// Counts one more entry of an archive read as a stream.
    fn count_entry(&mut self) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(reject(format!(
                "the archive holds more than {} entries (files and folders), the most allowed",
                self.limits.max_entries
            )));
        }
        Ok(())
    }

    fn entry(&mut self, name: &str, kind: Kind, data: &mut dyn Read) -> Result<()> {
        self.last = Some(name.to_owned());
        let path = layout::check_name(name)?;
        match kind {
            Kind::Refused(what) => {
                return Err(reject(format!(
                    "entry '{}' is {what}; the archive may hold only folders and image files",
                    shown(name)
                )));
            }
            Kind::Folder => return Ok(()),
            Kind::File => {}
        }
        if path.is_empty() || layout::is_ignored(&path) {
            return Ok(());
        }
        if !layout::is_image_name(&path) {
            return Err(reject(format!(
                "entry '{}' is not a PNG or JPEG image (.png, .jpg or .jpeg); remove it from the \
                 archive (hidden files, __MACOSX, Thumbs.db and desktop.ini are skipped)",
                shown(name)
            )));
        }
        let max = self.limits.max_image_bytes;
        let read = read_at_most(data, max);
        if self.meter.exceeded() {
            return Err(self.expanded_too_far());
        }
        let bytes = match read {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return Err(reject(format!(
                    "entry '{}' is larger than {max} bytes, the largest image file allowed",
                    shown(name)
                )));
            }
            Err(err) => {
                return Err(reject(format!(
                    "entry '{}' cannot be read: {err}",
                    shown(name)
                )));
            }
        };
        (self.visit)(name, path, &bytes)
    }

    fn expanded_too_far(&self) -> crate::error::DataError {
        let at = self
            .last
            .as_deref()
            .map(|n| format!(" (stopped at entry '{}')", shown(n)))
            .unwrap_or_default();
        reject(format!(
            "the archive expands to more than {} bytes, the most allowed{at}",
            self.meter.max
        ))
    }

    /// An error while moving between entries: the limit, or a corrupt archive.
    fn broken(&self, err: impl std::fmt::Display) -> crate::error::DataError {
        if self.meter.exceeded() {
            return self.expanded_too_far();
        }
        let at = self
            .last
            .as_deref()
            .map(|n| format!(" after entry '{}'", shown(n)))
            .unwrap_or_default();
        reject(format!("the archive is corrupt{at}: {err}"))
    }
}

/// Reads the whole entry if it has at most `max` bytes, else `None` as soon as it passes
/// `max`. Unlike `read_to_end`, the buffer never grows past `max`, so an entry over the limit
/// costs at most about `max` bytes of memory before it is refused.
fn read_at_most(data: &mut dyn Read, max: u64) -> io::Result<Option<Vec<u8>>> {
    const CHUNK: usize = 64 * 1024;
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let mut bytes: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = match data.read(&mut chunk) {
            Ok(0) => return Ok(Some(bytes)),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if n > max - bytes.len() {
            return Ok(None);
        }
        if bytes.capacity() - bytes.len() < n {
            let grow = bytes.len().max(CHUNK).min(max - bytes.len()).max(n);
            bytes.reserve_exact(grow);
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
}

/// The entry count a zip's end-of-central-directory record declares (zip64 included), if it
/// can be found. The zip reader allocates for that many entries before anything else can be
/// checked, so too large a count is refused first.
fn zip_declared_entries<R: Read + Seek>(reader: &mut R) -> io::Result<Option<u64>> {
    const EOCD: &[u8] = b"PK\x05\x06";
    let len = reader.seek(SeekFrom::End(0))?;
    let tail_start = len.saturating_sub(22 + u64::from(u16::MAX));
    reader.seek(SeekFrom::Start(tail_start))?;
    let mut tail = Vec::new();
    reader.read_to_end(&mut tail)?;
    let Some(at) = tail.windows(4).rposition(|w| w == EOCD) else {
        return Ok(None);
    };
    let u16_at = |b: &[u8], i: usize| Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?));
    let u64_at = |b: &[u8], i: usize| Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?));
    let Some(count) = u16_at(&tail, at + 10) else {
        return Ok(None);
    };
    if count != u16::MAX {
        return Ok(Some(u64::from(count)));
    }
    // Zip64: a locator just before the record points at the zip64 record with the real count.
    let Some(locator) = at.checked_sub(20) else {
        return Ok(Some(u64::from(count)));
    };
    if tail.get(locator..locator + 4) != Some(b"PK\x06\x07") {
        return Ok(Some(u64::from(count)));
    }
    let Some(record) = u64_at(&tail, locator + 8) else {
        return Ok(None);
    };
    if record >= len {
        return Ok(None);
    }
    reader.seek(SeekFrom::Start(record))?;
    let mut head = Vec::with_capacity(40);
    reader.take(40).read_to_end(&mut head)?;
    if head.get(..4) != Some(b"PK\x06\x06") {
        return Ok(None);
    }
    Ok(u64_at(&head, 32))
}

fn read_zip<R: Read + Seek>(reader: &mut R, collector: &mut Collector<'_, '_>) -> Result<()> {
    if let Some(declared) = zip_declared_entries(reader).map_err(unreadable)? {
        collector.check_total(usize::try_from(declared).unwrap_or(usize::MAX))?;
    }
    reader.seek(SeekFrom::Start(0)).map_err(unreadable)?;
    let mut zip = zip::ZipArchive::new(reader).map_err(|err| collector.broken(err))?;
    collector.check_total(zip.len())?;
    for index in 0..zip.len() {
        let (name, kind) = {
            let raw = zip
                .by_index_raw(index)
                .map_err(|err| collector.broken(err))?;
            let name = match raw.name() {
                Ok(name) => name.into_owned(),
                Err(_) => {
                    return Err(reject(format!(
                        "entry number {} has a name that is not valid text",
                        index + 1
                    )));
                }
            };
            if raw.encrypted() {
                return Err(reject(format!(
                    "entry '{}' is encrypted; upload an archive without a password",
                    shown(&name)
                )));
            }
            (name, zip_kind(&raw))
        };
        let mut file = match zip.by_index(index) {
            Ok(file) => file,
            Err(err) => {
                return Err(reject(format!(
                    "entry '{}' cannot be read: {err}; store or deflate its data",
                    shown(&name)
                )));
            }
        };
        let meter = collector.meter;
        collector.entry(&name, kind, &mut Metered::new(&mut file, meter))?;
    }
    Ok(())
}

fn zip_kind<R: Read>(file: &zip::read::ZipFile<'_, R>) -> Kind {
    const TYPE_MASK: u32 = 0o170_000;
    if file.is_symlink() {
        return Kind::Refused("a symbolic link");
    }
    match file.unix_mode().map(|mode| mode & TYPE_MASK) {
        None | Some(0) | Some(0o100_000) => {
            if file.is_dir() {
                Kind::Folder
            } else {
                Kind::File
            }
        }
        Some(0o040_000) => Kind::Folder,
        Some(0o120_000) => Kind::Refused("a symbolic link"),
        Some(0o020_000) => Kind::Refused("a character device"),
        Some(0o060_000) => Kind::Refused("a block device"),
        Some(0o010_000) => Kind::Refused("a named pipe"),
        Some(0o140_000) => Kind::Refused("a socket"),
        Some(_) => Kind::Refused("a special file"),
    }
}

fn read_tar<R: Read>(reader: R, collector: &mut Collector<'_, '_>) -> Result<()> {
    use tar::EntryType;
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|err| collector.broken(err))?;
    for entry in entries {
        let mut entry = entry.map_err(|err| collector.broken(err))?;
        collector.count_entry()?;
        let kind = match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous => Kind::File,
            EntryType::Directory => Kind::Folder,
            // Metadata for the whole archive, not a file.
            EntryType::XGlobalHeader => continue,
            EntryType::Symlink => Kind::Refused("a symbolic link"),
            EntryType::Link => Kind::Refused("a hard link"),
            EntryType::Char => Kind::Refused("a character device"),
            EntryType::Block => Kind::Refused("a block device"),
            EntryType::Fifo => Kind::Refused("a named pipe"),
            EntryType::GNUSparse => Kind::Refused("a sparse file"),
            _ => Kind::Refused("an entry of an unknown type"),
        };
        let name = match String::from_utf8(entry.path_bytes().into_owned()) {
            Ok(name) => name,
            Err(err) => {
                let lossy = String::from_utf8_lossy(err.as_bytes()).into_owned();
                return Err(reject(format!(
                    "entry '{}' has a name that is not UTF-8 text",
                    shown(&lossy)
                )));
            }
        };
        collector.entry(&name, kind, &mut entry)?;
    }
    Ok(())
}
