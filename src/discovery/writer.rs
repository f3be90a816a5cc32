//! The one way published files reach the disk: render into a temporary file in the target's
//! directory, fsync it, rename it over the target and fsync the directory. A reader (the DNS
//! server, `slapadd`) sees the old file or the new one, never half of one; a failure at any
//! step leaves the old file as it was.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::error::{Error, Result};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `path` atomically with what `render` streams into it; the file gets exactly `mode`
/// (the configured `publish.file_mode`), whatever the process umask.
pub fn write_atomic<F>(path: &Path, mode: u32, render: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    write_atomic_with(path, mode, true, render)
}

/// [`write_atomic`]; without `sync_dir` the caller fsyncs the directory ([`sync_dir`]) once
/// after a batch of files, before it relies on the renames.
pub fn write_atomic_with<F>(path: &Path, mode: u32, sync_dir: bool, render: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let dir = parent_dir(path);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let tmp = temp_path(&dir, path);
    let result = write_temp(&tmp, mode, render).and_then(|()| {
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

fn write_temp<F>(tmp: &Path, mode: u32, render: F) -> std::io::Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)?;
    // The umask narrows `mode` at creation; published files need exactly the configured bits.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    let syncer_file = file.try_clone()?;
    let written = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let syncer = s.spawn(|| background_sync(&syncer_file, &written, &done));
        let result = (|| {
            let mut out = BufWriter::with_capacity(
                256 * 1024,
                Counting {
                    file: &file,
                    written: &written,
                },
            );
            render(&mut out)?;
            out.flush()
        })();
        done.store(true, Ordering::Relaxed);
        syncer.thread().unpark();
        let _ = syncer.join();
        result
    })?;
    file.sync_all()
}

/// Bytes written since the last background writeback that start the next one.
const BACKGROUND_SYNC_BYTES: u64 = 8 * 1024 * 1024;

/// Writes back a large file while it is still being rendered, so its final fsync (the LDIF
/// export is ~185 MB for 100,000 certificates) does not start all the disk work at the end.
/// Small files (zones) never reach the threshold.
fn background_sync(file: &File, written: &AtomicU64, done: &AtomicBool) {
    let mut synced = 0;
    while !done.load(Ordering::Relaxed) {
        let now = written.load(Ordering::Relaxed);
        if now - synced >= BACKGROUND_SYNC_BYTES {
            // A failure here shows again in the final sync_all, which is what counts.
            let _ = file.sync_data();
            synced = now;
        } else {
            std::thread::park_timeout(std::time::Duration::from_millis(20));
        }
    }
}

/// A file writer that counts what reached the file.
struct Counting<'a> {
    file: &'a File,
    written: &'a AtomicU64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = (&mut &*self.file).write(buf)?;
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
        write_atomic(&path, 0o644, |w| w.write_all(b"one\n")).unwrap();
        write_atomic(&path, 0o644, |w| w.write_all(b"two\n")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two\n");

        let failed = write_atomic(&path, 0o644, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("render failed"))
        });
        assert_eq!(failed.unwrap_err().code(), "io_error");
        assert_eq!(std::fs::read(&path).unwrap(), b"two\n");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "the temporary file is removed");
    }
}
