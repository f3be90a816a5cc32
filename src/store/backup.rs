//! Backups: a snapshot of every sled tree (and the data directory's configuration) in one
//! self-describing file, and the restore that rebuilds a store from it.
//!
//! The file is one header line, `anchorage-backup 1 sha256=<hex> bytes=<n>`, then `n` bytes of
//! JSON: `{"created_at", "revision", "config", "audit_key", "trees": [{"name", "entries":
//! [[key, value]]}]}` with keys, values and names in base64. `audit_key` is the sealed audit
//! key file (`audit.key`, absent for a log never keyed): without it a restored log could be
//! neither verified nor extended. The length catches a truncated file and the
//! checksum a damaged one before anything is written. The snapshot is consistent: every store
//! change bumps the store revision in the same transaction, so an export during which the
//! revision did not move saw no change; one that raced a write is taken again.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::Store;
use crate::error::{Error, Result};

/// The format name in the header line.
pub const BACKUP_FORMAT: &str = "anchorage-backup";
/// The format version this build writes and reads.
pub const BACKUP_VERSION: u32 = 1;

/// How often an export that raced a write is retried before giving up.
const ATTEMPTS: usize = 20;

/// What a backup file holds, decoded.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub created_at: String,
    /// The store revision the snapshot reflects.
    pub revision: u64,
    /// The data directory's `anchorage.toml`, when it had one.
    pub config: Option<String>,
    /// The data directory's sealed `audit.key`, when the log is keyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_key: Option<String>,
    pub trees: Vec<TreeDump>,
}

/// One sled tree.
#[derive(Debug, Serialize, Deserialize)]
pub struct TreeDump {
    /// base64 of the tree name.
    pub name: String,
    /// `[key, value]`, base64.
    pub entries: Vec<[String; 2]>,
}

impl Snapshot {
    /// Records (entries) across every tree.
    pub fn entries(&self) -> usize {
        self.trees.iter().map(|t| t.entries.len()).sum()
    }

    /// The backup file's bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let body = serde_json::to_vec(self)
            .map_err(|e| Error::Store(format!("encoding the backup: {e}")))?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
        let mut out = format!(
            "{BACKUP_FORMAT} {BACKUP_VERSION} sha256={} bytes={}\n",
            hex::encode(digest.as_ref()),
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Reads and checks a backup file's bytes; `path` names it in errors.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Snapshot> {
        let bad = |problem: String| Error::BackupInvalid {
            path: path.display().to_string(),
            problem,
        };
        let newline = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| bad("no header line: not an anchorage backup, or truncated".into()))?;
        let (header, rest) = bytes.split_at(newline);
        let body = rest.get(1..).unwrap_or_default();
        let header = std::str::from_utf8(header)
            .map_err(|_| bad("the header line is not text: not an anchorage backup".into()))?;
        let fields: Vec<&str> = header.split(' ').collect();
        let (version, sha, len) = match fields.as_slice() {
            [format, version, sha, len] if *format == BACKUP_FORMAT => (*version, *sha, *len),
            _ => {
                return Err(bad(format!(
                    "the header '{header}' is not '{BACKUP_FORMAT} VERSION sha256=.. bytes=..'"
                )))
            }
        };
        if version != BACKUP_VERSION.to_string() {
            return Err(bad(format!(
                "format version {version} is not supported (this build reads {BACKUP_VERSION})"
            )));
        }
        let expected: usize = len
            .strip_prefix("bytes=")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad(format!("bad length field '{len}'")))?;
        if body.len() != expected {
            return Err(bad(format!(
                "truncated or damaged: the header promises {expected} bytes of data, the file holds {}",
                body.len()
            )));
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
        if sha.strip_prefix("sha256=") != Some(hex::encode(digest.as_ref()).as_str()) {
            return Err(bad(
                "checksum mismatch: the data is damaged (SHA-256 differs from the header)".into(),
            ));
        }
        serde_json::from_slice(body).map_err(|e| bad(format!("unreadable contents: {e}")))
    }
}

impl Store {
    /// A consistent snapshot of every tree; `config` is the data directory's configuration.
    pub fn snapshot(
        &self,
        created_at: String,
        config: Option<String>,
        audit_key: Option<String>,
    ) -> Result<Snapshot> {
        for _ in 0..ATTEMPTS {
            let before = self.revision()?;
            let trees = self.dump_trees()?;
            if self.revision()? == before {
                return Ok(Snapshot {
                    created_at,
                    revision: before,
                    config,
                    audit_key,
                    trees,
                });
            }
        }
        Err(Error::Store(format!(
            "the store changed during each of {ATTEMPTS} backup attempts; try again when it is quieter"
        )))
    }

    fn dump_trees(&self) -> Result<Vec<TreeDump>> {
        let mut trees = Vec::new();
        for name in self.db.tree_names() {
            let tree = self.db.open_tree(&name)?;
            let mut entries = Vec::new();
            for kv in tree.iter() {
                let (k, v) = kv?;
                entries.push([STANDARD.encode(k), STANDARD.encode(v)]);
            }
            trees.push(TreeDump {
                name: STANDARD.encode(&name),
                entries,
            });
        }
        Ok(trees)
    }

    /// Creates a store under `dir` holding exactly the snapshot's trees. `dir` must not hold
    /// a store yet.
    pub fn restore(dir: &Path, snapshot: &Snapshot) -> Result<Store> {
        let decode = |s: &str, what: &str| {
            STANDARD
                .decode(s)
                .map_err(|e| Error::Store(format!("backup {what} is not base64: {e}")))
        };
        let store = Store::open(dir)?;
        for dump in &snapshot.trees {
            let tree = store.db.open_tree(decode(&dump.name, "tree name")?)?;
            let mut batch = sled::Batch::default();
            for [k, v] in &dump.entries {
                batch.insert(decode(k, "key")?, decode(v, "value")?);
            }
            tree.apply_batch(batch)?;
        }
        store.flush()?;
        super::private_files_after_write(dir)?;
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a")).unwrap();
        store.certs.insert(b"k", b"v".to_vec()).unwrap();
        let snap = store
            .snapshot("now".into(), Some("x = 1".into()), None)
            .unwrap();
        let bytes = snap.encode().unwrap();
        let path = Path::new("b.backup");
        let back = Snapshot::decode(path, &bytes).unwrap();
        assert_eq!(back.config.as_deref(), Some("x = 1"));
        let restored = Store::restore(&dir.path().join("b"), &back).unwrap();
        assert_eq!(restored.certs.get(b"k").unwrap().unwrap().as_ref(), b"v");

        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "fail/truncated",
                bytes[..bytes.len() - 5].to_vec(),
                "truncated",
            ),
            ("fail/no-header", b"hello".to_vec(), "no header"),
            (
                "fail/flipped",
                {
                    let mut b = bytes.clone();
                    let last = b.len() - 2;
                    b[last] ^= 1;
                    b
                },
                "checksum",
            ),
        ];
        for (name, damaged, expect) in cases {
            let err = Snapshot::decode(path, &damaged).unwrap_err();
            assert_eq!(err.code(), "backup_invalid", "{name}");
            assert!(err.to_string().contains(expect), "{name}: {err}");
        }
    }
}
