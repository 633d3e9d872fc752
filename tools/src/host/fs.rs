//! File helpers every step shares: removing what may be absent, sizes,
//! sha256 checksums, the end of a log, and cache entries that appear only
//! once complete.
//!
//! A cache entry is made in a temporary directory or file beside its
//! final path (same filesystem, so the rename is atomic) and renamed into
//! place when it is complete: an interrupted build leaves nothing
//! half-made where a later run would take it as done.

use std::fs::DirEntry;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use tempfile::{NamedTempFile, TempDir};
use walkdir::WalkDir;

pub fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

pub fn remove_file_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

pub fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("reading the size of {}", path.display()))?
        .len())
}

/// The bytes of the regular files under `root`.
pub fn tree_bytes(root: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in WalkDir::new(root) {
        let entry = entry.with_context(|| format!("walking {}", root.display()))?;
        if entry.file_type().is_file() {
            total += entry
                .metadata()
                .with_context(|| format!("reading {}", entry.path().display()))?
                .len();
        }
    }
    Ok(total)
}

/// A directory's entries by name, so what is built from them is reproducible.
pub fn read_dir_sorted(dir: &Path) -> Result<Vec<DirEntry>> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    entries.sort_by_key(|entry| entry.file_name());
    Ok(entries)
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lowercase hex sha256 of a file's contents, read in blocks.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file
            .read(&mut buffer)
            .with_context(|| format!("reading {}", path.display()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The last `count` lines of a log file, or nothing if it cannot be read.
pub fn log_tail(log: &Path, count: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// A fresh temporary directory beside `entry` (removed when dropped):
/// where a cache entry is made before [`persist_dir`] puts it in place.
pub fn scratch_dir_for(entry: &Path) -> Result<TempDir> {
    let parent = parent_of(entry)?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    tempfile::Builder::new()
        .prefix(".partial-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))
}

/// Renames a complete `scratch` directory to `entry`. When another
/// process put `entry` in place first, its copy is as good: ours is dropped.
pub fn persist_dir(scratch: TempDir, entry: &Path) -> Result<()> {
    let scratch = scratch.keep();
    match std::fs::rename(&scratch, entry) {
        Ok(()) => Ok(()),
        Err(_) if entry.is_dir() => remove_dir_if_present(&scratch),
        Err(error) => {
            let moved = Err(error)
                .with_context(|| format!("moving {} to {}", scratch.display(), entry.display()));
            // Best effort: the error that matters is the rename's.
            let _ = remove_dir_if_present(&scratch);
            moved
        }
    }
}

/// A fresh temporary file beside `entry` (removed when dropped); its
/// `persist(entry)` puts it in place.
pub fn scratch_file_for(entry: &Path) -> Result<NamedTempFile> {
    let parent = parent_of(entry)?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(parent)
        .with_context(|| format!("creating a temporary file in {}", parent.display()))
}

/// Copies `from` to `entry` through a temporary file, so `entry` never
/// exists half-written.
pub fn copy_into_place(from: &Path, entry: &Path) -> Result<()> {
    let scratch = scratch_file_for(entry)?;
    std::fs::copy(from, scratch.path())
        .with_context(|| format!("copying {} to {}", from.display(), entry.display()))?;
    persist_file(scratch, entry)
}

/// Renames a complete temporary file to `entry`.
pub fn persist_file(scratch: NamedTempFile, entry: &Path) -> Result<()> {
    scratch
        .persist(entry)
        .map(drop)
        .with_context(|| format!("moving {} into place", entry.display()))
}

fn parent_of(entry: &Path) -> Result<&Path> {
    entry
        .parent()
        .with_context(|| format!("{} has no parent directory", entry.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_bytes_and_of_a_file() {
        const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex(b"abc"), ABC);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(sha256_file(&path).unwrap(), ABC);
    }

    #[test]
    fn a_cache_entry_appears_only_when_persisted() {
        let cache = tempfile::tempdir().unwrap();
        let entry = cache.path().join("entry");
        let scratch = scratch_dir_for(&entry).unwrap();
        std::fs::write(scratch.path().join("file"), b"x").unwrap();
        assert!(!entry.exists());
        persist_dir(scratch, &entry).unwrap();
        assert!(entry.join("file").is_file());

        // A second maker keeps the first one's entry and leaves no scratch behind.
        let late = scratch_dir_for(&entry).unwrap();
        std::fs::write(late.path().join("other"), b"y").unwrap();
        persist_dir(late, &entry).unwrap();
        assert!(!entry.join("other").exists());
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1);

        // Dropped without persisting: nothing is left.
        drop(scratch_dir_for(&cache.path().join("abandoned")).unwrap());
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1);
    }

    #[test]
    fn removing_what_is_absent_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        remove_dir_if_present(&dir.path().join("none")).unwrap();
        remove_file_if_present(&dir.path().join("none")).unwrap();
    }
}
