//! Files that hold secrets (the store with its sealed keys and subscriber records, the
//! configuration, the control token, the passphrase file) are private whatever the process
//! umask: directories 0700, files 0600, set explicitly rather than left to the umask, and
//! start-up refuses a store or passphrase file that group or others can read, naming the
//! `chmod` that fixes it.

use std::fs::Permissions;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Mode of a private directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of a private file.
pub const FILE_MODE: u32 = 0o600;

/// Refuses `path` when group or others have any access to it. A missing path is fine.
pub fn check(path: &Path) -> Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let fix = if meta.is_dir() {
        format!("chmod -R go-rwx {}", path.display())
    } else {
        format!("chmod 600 {}", path.display())
    };
    Err(Error::InsecurePermissions {
        path: path.display().to_string(),
        mode: format!("{mode:04o}"),
        fix,
    })
}

/// Creates `path` (and missing parents) as a private directory, or makes an existing one
/// private.
pub fn create_dir(path: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(|e| Error::io(path, e))?;
    set_mode(path, DIR_MODE)
}

/// Makes the directory `path` and everything under it private (directories 0700, files
/// 0600); for directories another library fills (sled).
pub fn restrict_tree(path: &Path) -> Result<()> {
    set_mode(path, DIR_MODE)?;
    let entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(path, e))?;
        let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
        if kind.is_dir() {
            restrict_tree(&entry.path())?;
        } else if kind.is_file() {
            restrict_file(&entry.path())?;
        }
    }
    Ok(())
}

/// Makes one file private; a file removed meanwhile is not an error.
pub fn restrict_file(path: &Path) -> Result<()> {
    match std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(|e| Error::io(path, e)),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, Permissions::from_mode(mode)).map_err(|e| Error::io(path, e))
}

/// Writes `bytes` to `path` atomically (a synced temporary file renamed over it, the directory
/// synced after): 0600 when
/// `secret`, 0644 otherwise, whatever the umask.
pub fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mode = if secret { FILE_MODE } else { 0o644 };
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself survives a power loss only once the directory is synced.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_group_or_world_access_and_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        create_dir(&store).unwrap();
        std::fs::write(store.join("db"), b"x").unwrap();
        std::fs::set_permissions(store.join("db"), Permissions::from_mode(0o644)).unwrap();
        check(&store).unwrap();
        restrict_tree(&store).unwrap();
        let mode = std::fs::metadata(store.join("db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::set_permissions(&store, Permissions::from_mode(0o755)).unwrap();
        let err = check(&store).unwrap_err();
        assert_eq!(err.code(), "insecure_permissions");
        assert!(
            err.to_string()
                .contains(&format!("chmod -R go-rwx {}", store.display())),
            "{err}"
        );
        check(&dir.path().join("missing")).unwrap();
    }
}
