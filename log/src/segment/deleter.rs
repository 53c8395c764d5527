//! Removes retired segment files off the caller's thread.
//!
//! Unlinking a file whose pages are cached costs the kernel time in proportion to them
//! (about 190 ms for 1 GiB on the machine in docs/BENCHMARKS.md), which would stall the
//! shard whose retention pass deleted it. A retired file is first renamed to
//! `<name>.deleted` (cheap, and made durable with the directory), so the log no longer
//! sees it; the unlink then happens on one background thread. A crash in between leaves
//! only `*.deleted` names, which the next open removes.

use crate::error::{IoContext, Result};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

/// Suffix appended to a retired file's name.
pub const DELETED_SUFFIX: &str = "deleted";

/// Retired files waiting for the deleter thread; when full, the caller unlinks itself.
const QUEUE: usize = 1024;

static DELETER: OnceLock<Option<SyncSender<PathBuf>>> = OnceLock::new();

/// Renames `path` to `<path>.deleted` and has it unlinked in the background; a missing
/// file is not an error. The caller syncs the directory to make the rename durable.
pub(crate) fn retire(path: &Path) -> Result<()> {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(DELETED_SUFFIX);
    let retired = PathBuf::from(name);
    match std::fs::rename(path, &retired) {
        Ok(()) => {
            remove_later(retired);
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).at(path),
    }
}

/// Whether `suffix` (what follows a segment's base offset) names a retired file.
pub(crate) fn is_retired(suffix: &str) -> bool {
    suffix
        .strip_suffix(DELETED_SUFFIX)
        .is_some_and(|s| s.ends_with('.'))
}

/// Unlinks `path` (a file, or a folder and everything in it) on the deleter thread, or
/// here when that thread cannot take it.
pub(crate) fn remove_later(path: PathBuf) {
    let sender = DELETER.get_or_init(|| {
        let (tx, rx) = sync_channel::<PathBuf>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("strata-deleter".into())
            .spawn(move || {
                for path in rx {
                    remove_now(&path);
                }
            });
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!(error = %e, "no deleter thread: retired files are removed inline");
                None
            }
        }
    });
    let path = match sender {
        Some(tx) => match tx.try_send(path) {
            Ok(()) => return,
            Err(TrySendError::Full(path) | TrySendError::Disconnected(path)) => path,
        },
        None => path,
    };
    remove_now(&path);
}

fn remove_now(path: &Path) {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a retired file")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn gone_soon(path: &Path) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while path.exists() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    #[test]
    fn a_retired_file_is_renamed_at_once_and_removed_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000007.log");
        std::fs::write(&path, b"old segment").unwrap();
        retire(&path).unwrap();
        assert!(!path.exists(), "the log no longer sees it");
        assert!(gone_soon(
            &dir.path().join("00000000000000000007.log.deleted")
        ));
        // Retiring what is already gone is fine.
        retire(&path).unwrap();
    }

    #[test]
    fn retired_names_are_recognised() {
        assert!(is_retired("log.deleted"));
        assert!(is_retired("timeindex.deleted"));
        assert!(!is_retired("log"));
        assert!(!is_retired("logdeleted"));
        assert!(!is_retired("index.tmp"));
    }
}
