//! `backup` and `restore`. A backup goes through the running server (`GET /api/v1/backup`
//! with the control token) when `serve` holds the store, and reads the store directly when it
//! does not; either way the file is written 0600 (it holds the sealed CA keys and subscriber
//! records). A restore builds a new data directory and never touches an existing one.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::remote::{download, target, Target};
use super::{emit, write_file, Output};
use crate::config::Config;
use crate::error::{Error, Result};

/// `anchorage backup --out FILE`.
pub(super) fn backup(config: Config, out_path: &Path, out: Output) -> Result<()> {
    let (bytes, via) = match target(config)? {
        Target::Direct(authority) => (authority.backup()?, "store"),
        Target::Server { url, token } => {
            let path = format!("{url}/api/v1/backup");
            (download(&url, &token, &path, Error::Store)?.1, "server")
        }
    };
    // Check what is about to be kept, also what the server sent.
    let snapshot = crate::authority::Snapshot::decode(out_path, &bytes)?;
    write_file(out_path, &bytes, true)?;
    emit(
        out,
        json!({"out": out_path, "bytes": bytes.len(), "revision": snapshot.revision,
               "trees": snapshot.trees.len(), "entries": snapshot.entries(), "via": via}),
        || {
            format!(
                "wrote backup {} ({} bytes, store revision {}, {} records, via the {via})",
                out_path.display(),
                bytes.len(),
                snapshot.revision,
                snapshot.entries()
            )
        },
    )
}

/// `anchorage restore FILE --data-dir D`.
pub(super) fn restore(file: &Path, data_dir: PathBuf, out: Output) -> Result<()> {
    let report = crate::authority::restore(file, &data_dir)?;
    emit(
        out,
        serde_json::to_value(&report).map_err(|e| Error::InvalidInput(e.to_string()))?,
        || {
            format!(
                "restored {} from {} (store revision {}, {} records, taken {}); check it with: anchorage --data-dir {} audit verify",
                data_dir.display(),
                file.display(),
                report.revision,
                report.entries,
                report.created_at,
                data_dir.display()
            )
        },
    )
}
