//! Small file helpers for secrets kept in the data folder.
//!
//! A file is never seen half written: its bytes go to a temporary file beside it, synced,
//! which then takes the file's name in one step. A reader (another process starting on the
//! same folder, a test waiting for the file) finds either no file or the whole of it, and a
//! crash midway leaves no empty or truncated file behind to be read at the next start.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes a new file readable only by its owner; fails if it already exists (another
/// process made it first: the first writer wins, and the others read its file). The data
/// folder must be on a file system with hard links, as every Linux one is.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = written_aside(path, bytes, true)?;
    // A hard link, unlike a rename, never replaces a file that exists.
    let linked = std::fs::hard_link(&tmp, path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()));
    let _ = std::fs::remove_file(&tmp);
    linked
}

/// Writes `path` whole, replacing it if it exists: readable only by its owner when `private`,
/// else with the mode the process's umask gives.
pub fn replace(path: &Path, bytes: &[u8], private: bool) -> Result<(), String> {
    let tmp = written_aside(path, bytes, private)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

/// A new temporary file in `path`'s folder holding `bytes`, synced.
fn written_aside(path: &Path, bytes: &[u8], private: bool) -> Result<PathBuf, String> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    // 96 random bits: unique to this call, and never one a crashed process left behind.
    name.push(".tmp-");
    name.push(tessera_core::rand::hex_id(
        &tessera_core::rand::SystemRandom,
    ));
    let tmp = path.with_file_name(name);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    match f.write_all(bytes).and_then(|()| f.sync_all()) {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(format!("cannot write {}: {e}", tmp.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_private_file_is_made_once_owner_only_and_nothing_is_left_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        write_private(&path, b"first").unwrap();
        assert!(write_private(&path, b"second").is_err(), "it exists");
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(names(dir.path()), ["secret.key"]);
    }

    #[test]
    fn a_replaced_file_is_whole_and_nothing_is_left_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        replace(&path, b"old", false).unwrap();
        replace(&path, b"new", false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        replace(&dir.path().join("key.pem"), b"k", true).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(names(dir.path()), ["cert.pem", "key.pem"]);
        // A folder that is not there: an error, and no file.
        let missing = dir.path().join("nowhere/x");
        assert!(write_private(&missing, b"x").is_err());
        assert!(replace(&missing, b"x", true).is_err());
    }

    /// A reader that opens the file the moment it appears reads all of it. Written in place
    /// (create, then write), a reader could find it empty or cut short: the dev mode's TLS
    /// test once read the certificate that way, trusted nothing, and timed out.
    #[test]
    fn a_file_that_has_appeared_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = vec![b'x'; 8 << 20];
        for (i, private) in [(0, true), (1, false)] {
            let path = dir.path().join(format!("f{i}"));
            let reader = {
                let path = path.clone();
                std::thread::spawn(move || {
                    loop {
                        if let Ok(b) = std::fs::read(&path) {
                            return b.len();
                        }
                        std::hint::spin_loop();
                    }
                })
            };
            if private {
                write_private(&path, &bytes).unwrap();
            } else {
                replace(&path, &bytes, false).unwrap();
            }
            assert_eq!(reader.join().unwrap(), bytes.len());
        }
    }
}
