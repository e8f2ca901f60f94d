//! Entry names: the safety checks, and the folder layout that gives each image its class and
//! split.
//!
//! Accepted layouts (after an optional single folder wrapping everything):
//! `<class>/<file>`, or `train/<class>/<file>` and `val/<class>/<file>` with optional
//! `test/<class>/<file>` for a split of the user's own.

use std::collections::{BTreeMap, BTreeSet};

use super::decode::Header;
use super::{ImageLimits, reject, shown};
use crate::Split;
use crate::error::Result;

/// The folder names that mark a split, in row order.
const SPLITS: [(&str, Split); 3] = [
    ("train", Split::Train),
    ("val", Split::Val),
    ("test", Split::Test),
];

/// File extensions read as images (compared in lower case).
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The longest entry name and class name accepted, in bytes.
const MAX_NAME_BYTES: usize = 1024;
const MAX_CLASS_BYTES: usize = 200;

/// Checks an entry's name and splits it into its parts, without empty or `.` parts (so `./a/b`
/// and `a//b/` are fine). Rejects, naming the entry: NUL and control characters, backslashes,
/// absolute paths, drive letters and any other `:`, and `..`.
pub(super) fn check_name(name: &str) -> Result<Vec<String>> {
    let problem = if name.len() > MAX_NAME_BYTES {
        Some(format!("is longer than {MAX_NAME_BYTES} bytes"))
    } else if name.chars().any(char::is_control) {
        Some("contains a control character".to_owned())
    } else if name.contains('\\') {
        Some("contains a backslash; folders must be separated by '/'".to_owned())
    } else if name.starts_with('/') {
        Some("is an absolute path".to_owned())
    } else if name.contains(':') {
        Some("contains ':' (a drive letter or a stream name)".to_owned())
    } else if name.split('/').any(|part| part == "..") {
        Some("climbs out of its folder with '..'".to_owned())
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(reject(format!(
            "entry '{}' {problem}; entries must be relative paths inside the archive",
            shown(name)
        )));
    }
    Ok(name
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .map(str::to_owned)
        .collect())
}

/// True for files skipped quietly: hidden files and folders, and operating-system litter.
pub(super) fn is_ignored(path: &[String]) -> bool {
    path.iter()
        .any(|part| part.starts_with('.') || part == "__MACOSX")
        || path.last().is_some_and(|f| {
            f.eq_ignore_ascii_case("thumbs.db") || f.eq_ignore_ascii_case("desktop.ini")
        })
}

/// True when the file name ends in `.png`, `.jpg` or `.jpeg` (any case).
pub(super) fn is_image_name(path: &[String]) -> bool {
    path.last()
        .and_then(|file| file.rsplit_once('.'))
        .is_some_and(|(stem, ext)| {
            !stem.is_empty() && IMAGE_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e))
        })
}

/// An image file of the archive as the first pass found it (its bytes are read again when
/// it is decoded).
pub(super) struct ArchiveFile {
    /// The entry's name as the archive writes it, for messages.
    pub name: String,
    /// Its path, checked and split into folders and file name.
    pub path: Vec<String>,
    /// Its place among the archive's image files, in archive order.
    pub ordinal: usize,
    /// What its header says.
    pub header: Header,
}

/// An image file with its class and split.
pub(super) struct LaidOut {
    /// The entry's name, for messages.
    pub name: String,
    /// Index into [`Layout::classes`].
    pub class: u32,
    /// Its split, when the archive has one.
    pub split: Option<Split>,
    /// Its place among the archive's image files, in archive order.
    pub ordinal: usize,
    /// What its header says.
    pub header: Header,
}

/// The images in row order, with the sorted class names.
pub(super) struct Layout {
    /// Sorted by (split, class, entry name).
    pub images: Vec<LaidOut>,
    /// Folder names of the classes, sorted.
    pub classes: Vec<String>,
    /// Whether the archive had `train/`, `val/` (and `test/`) folders.
    pub has_split: bool,
}

/// Gives each image its class and split, and checks the archive as a data set: a known
/// layout, no duplicates, at least two classes, enough images, no val/test class unknown to
/// train.
pub(super) fn arrange(mut files: Vec<ArchiveFile>, limits: &ImageLimits) -> Result<Layout> {
    if files.is_empty() {
        return Err(reject(
            "the archive holds no .png, .jpg or .jpeg images; put them in one folder per class",
        ));
    }
    strip_wrapper(&mut files);
    let has_split = files
        .iter()
        .any(|f| SPLITS.iter().any(|(name, _)| f.path[0] == *name));

    let mut placed: Vec<(Option<Split>, String, ArchiveFile)> = Vec::with_capacity(files.len());
    for file in files {
        let (split, class) = place(&file, has_split)?;
        if class.len() > MAX_CLASS_BYTES {
            return Err(reject(format!(
                "entry '{}': the class folder's name is longer than {MAX_CLASS_BYTES} bytes",
                shown(&file.name)
            )));
        }
        placed.push((split, class, file));
    }
    placed.sort_by(|a, b| {
        (split_rank(a.0), &a.1, &a.2.path).cmp(&(split_rank(b.0), &b.1, &b.2.path))
    });
    if let Some(pair) = placed.windows(2).find(|w| w[0].2.path == w[1].2.path) {
        return Err(reject(format!(
            "entry '{}' appears twice in the archive",
            shown(&pair[1].2.name)
        )));
    }

    let classes: BTreeSet<&str> = placed
        .iter()
        .filter(|(split, _, _)| matches!(split, None | Some(Split::Train)))
        .map(|(_, class, _)| class.as_str())
        .collect();
    check_classes(&classes, has_split)?;
    let classes: Vec<String> = classes.into_iter().map(str::to_owned).collect();
    let index: BTreeMap<&str, u32> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as u32))
        .collect();

    let mut images = Vec::with_capacity(placed.len());
    let mut seen_val = false;
    for (split, class, file) in &placed {
        seen_val |= *split == Some(Split::Val);
        let Some(&class) = index.get(class.as_str()) else {
            return Err(reject(format!(
                "entry '{}': class '{}' has no images under train/; every val/ and test/ class \
                 needs training images",
                shown(&file.name),
                shown(class)
            )));
        };
        images.push((*split, class));
    }
    if has_split && !seen_val {
        return Err(reject(
            "the archive has train/ but no images under val/; add a val/ folder with the same \
             class folders (test/ is optional), or put the class folders at the top level and \
             let each job split them",
        ));
    }
    if placed.len() < limits.min_images {
        return Err(reject(format!(
            "the archive holds {} images; a data set needs at least {}",
            placed.len(),
            limits.min_images
        )));
    }
    let images = placed
        .into_iter()
        .zip(images)
        .map(|((_, _, file), (split, class))| LaidOut {
            name: file.name,
            class,
            split,
            ordinal: file.ordinal,
            header: file.header,
        })
        .collect();
    Ok(Layout {
        images,
        classes,
        has_split,
    })
}

/// Drops a single folder that wraps every image (`pets/cat/1.png` → `cat/1.png`), as zipping a
/// folder produces; not when that folder is itself a split.
fn strip_wrapper(files: &mut [ArchiveFile]) {
    let first = &files[0].path[0];
    let wrapped = !SPLITS.iter().any(|(name, _)| first == name)
        && files
            .iter()
            .all(|f| f.path.len() >= 3 && f.path[0] == *first);
    if wrapped {
        for file in files.iter_mut() {
            file.path.remove(0);
        }
    }
}

/// The split and class of one image, or why its place is wrong.
fn place(file: &ArchiveFile, has_split: bool) -> Result<(Option<Split>, String)> {
    let path = &file.path;
    let split = SPLITS
        .iter()
        .find(|(name, _)| path[0] == *name)
        .map(|(_, split)| *split);
    let (expected, problem) = if has_split {
        let problem = match (split, path.len()) {
            (Some(split), 3) => return Ok((Some(split), path[1].clone())),
            (None, _) => "is outside train/, val/ and test/",
            (Some(_), 2) => "is not in a class folder",
            _ => "is nested too deep",
        };
        ("<train|val|test>/<class>/<image>", problem)
    } else {
        let problem = match path.len() {
            2 => return Ok((None, path[0].clone())),
            1 => "is not in a class folder",
            _ => "is nested too deep",
        };
        ("<class>/<image>", problem)
    };
    Err(reject(format!(
        "entry '{}' {problem}; lay images out as {expected}",
        shown(&file.name)
    )))
}

fn check_classes(classes: &BTreeSet<&str>, has_split: bool) -> Result<()> {
    if classes.len() >= 2 {
        return Ok(());
    }
    let found = match classes.iter().next() {
        Some(class) => format!("only one class folder, '{}'", shown(class)),
        None => "no class folders".to_owned(),
    };
    let under = if has_split { " under train/" } else { "" };
    Err(reject(format!(
        "the archive has {found}{under}; a classifier needs at least two classes, one folder each"
    )))
}

fn split_rank(split: Option<Split>) -> u8 {
    match split {
        None | Some(Split::Train) => 0,
        Some(Split::Val) => 1,
        Some(Split::Test) => 2,
    }
}
