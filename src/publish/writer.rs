//! The one way published files reach the disk: render into a temporary file in the target's
//! directory, fsync it, rename it over the target and fsync the directory. A reader (the DNS
//! server, `slapadd`) sees the old file or the new one, never half of one; a failure at any
//! step leaves the old file as it was.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `path` atomically with what `render` streams into it.
pub fn write_atomic<F>(path: &Path, render: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    write_atomic_with(path, true, render)
}

/// [`write_atomic`]; without `sync_dir` the caller fsyncs the directory ([`sync_dir`]) once
/// after a batch of files, before it relies on the renames.
pub fn write_atomic_with<F>(path: &Path, sync_dir: bool, render: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let dir = parent_dir(path);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let tmp = temp_path(&dir, path);
    let result = write_temp(&tmp, render).and_then(|()| {
        std::fs::rename(&tmp, path)?;
        if sync_dir {
            File::open(&dir)?.sync_all()?;
        }
        Ok(())
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| Error::io(path, e))
}

/// Makes the renames in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

fn write_temp<F>(tmp: &Path, render: F) -> std::io::Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(tmp)?;
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    render(&mut out)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

fn parent_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// Unique per process and call, hidden, in the same directory (so rename stays atomic).
fn temp_path(dir: &Path, path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_or_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.zone");
        write_atomic(&path, |w| w.write_all(b"one\n")).unwrap();
        write_atomic(&path, |w| w.write_all(b"two\n")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two\n");

        let failed = write_atomic(&path, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("render failed"))
        });
        assert_eq!(failed.unwrap_err().code(), "io_error");
        assert_eq!(std::fs::read(&path).unwrap(), b"two\n");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "the temporary file is removed");
    }
}
