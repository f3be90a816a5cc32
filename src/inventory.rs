//! The trust-bundle inventory: one reviewed `bundles/<name>.toml` per bundle, with optional
//! seed anchors under `bundles/<name>/anchors/`. Loading is strict so that a typo in a
//! declaration stops the service instead of publishing the wrong bundle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::external::source::ExternalSource;

/// File extensions read as seed anchors.
const SEED_EXTENSIONS: [&str; 5] = ["pem", "cer", "crt", "der", "p7b"];

/// Why a name in a bundle declaration is refused; the text follows the file name in the
/// configuration error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    #[error("'{0}' is not a bundle name (1-63 lower-case letters, digits and inner hyphens)")]
    BundleName(String),
    #[error(
        "admission_policy = '{0}' is outside the policies directory; name a file in \
         policies_dir by its stem (letters, digits, '-', '_'; without .toml), e.g. \
         'anchor-admission'"
    )]
    PolicyName(String),
}

/// A bundle name: lower-case letters, digits and hyphens, as used in URLs.
pub fn check_bundle_name(name: &str) -> std::result::Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(NameError::BundleName(name.to_string()))
    }
}

/// An admission policy is named by its file stem in the policies directory: a name that is
/// a path (separators, `..`, absolute) would read a file outside it.
pub fn check_policy_name(name: &str) -> std::result::Result<(), NameError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(NameError::PolicyName(name.to_string()))
    }
}

/// Trust-bundle metadata carried in the .p7b content and shown to operators.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleMetadata {
    /// The trust-community profile the bundle implements (free text).
    #[serde(default)]
    pub profile: String,
    /// Where the bundle is published; `{public_https_url}/bundles/<name>.p7b` when empty.
    #[serde(default)]
    pub distribution_point: String,
    /// Embed the metadata XML as the .p7b content (spec §5 variant); off by default because
    /// some consumers expect the content to be absent.
    #[serde(default)]
    pub embed_in_p7b: bool,
}

/// One local bundle as declared.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleDeclaration {
    #[serde(default)]
    pub name: String,
    /// Required for local bundles; an external bundle defaults to its name.
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Admission policy file under `policies/` (without `.toml`).
    #[serde(default = "default_policy")]
    pub admission_policy: String,
    /// Publish a CMS-signed .p7m beside the .p7b.
    #[serde(default = "yes")]
    pub signed: bool,
    /// A test/staging bundle; its anchors can be promoted to `promote_to`.
    #[serde(default)]
    pub test: bool,
    #[serde(default)]
    pub promote_to: Option<String>,
    #[serde(default)]
    pub metadata: BundleMetadata,
    /// External bundles whose admitted anchors this local bundle republishes with its own.
    #[serde(default)]
    pub include: Vec<String>,
    /// Present for an external bundle: where it is fetched from and how it is checked.
    #[serde(default)]
    pub source: Option<ExternalSource>,
}

impl BundleDeclaration {
    /// The external source, for an external bundle.
    pub fn external(&self) -> Option<&ExternalSource> {
        self.source.as_ref()
    }
}

fn default_policy() -> String {
    "anchor-admission".into()
}

fn yes() -> bool {
    true
}

/// A seed anchor file shipped with a declaration.
#[derive(Debug, Clone)]
pub struct SeedFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

/// A declaration with its seed files.
#[derive(Debug, Clone)]
pub struct DeclaredBundle {
    pub declaration: BundleDeclaration,
    pub file: PathBuf,
    pub seeds: Vec<SeedFile>,
}

/// Every declared bundle, by name.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub bundles: BTreeMap<String, DeclaredBundle>,
}

impl Inventory {
    /// Reads `dir/*.toml`; a missing directory is an empty inventory.
    pub fn load(dir: &Path) -> Result<Inventory> {
        let mut inventory = Inventory::default();
        if !dir.exists() {
            return Ok(inventory);
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for file in files {
            let declared = load_declaration(&file)?;
            inventory
                .bundles
                .insert(declared.declaration.name.clone(), declared);
        }
        inventory.check_links()?;
        Ok(inventory)
    }

    /// The external bundles, by name.
    pub fn externals(&self) -> impl Iterator<Item = (&str, &ExternalSource)> {
        self.bundles
            .iter()
            .filter_map(|(name, b)| Some((name.as_str(), b.declaration.external()?)))
    }

    /// The local bundles that include the external bundle `source`.
    pub fn includers(&self, source: &str) -> Vec<String> {
        self.bundles
            .values()
            .filter(|b| b.declaration.include.iter().any(|i| i == source))
            .map(|b| b.declaration.name.clone())
            .collect()
    }

    fn check_links(&self) -> Result<()> {
        for (name, b) in &self.bundles {
            for included in &b.declaration.include {
                let external = self
                    .bundles
                    .get(included)
                    .map(|t| t.declaration.source.is_some());
                if external != Some(true) {
                    return Err(Error::Config(format!(
                        "{}: include = ['{included}'] names no declared external bundle",
                        b.file.display()
                    )));
                }
            }
            if let Some(target) = &b.declaration.promote_to {
                let Some(t) = self.bundles.get(target) else {
                    return Err(Error::Config(format!(
                        "{}: promote_to = '{target}' names no declared bundle",
                        b.file.display()
                    )));
                };
                if t.declaration.test || target == name {
                    return Err(Error::Config(format!(
                        "{}: promote_to = '{target}' must name a production bundle",
                        b.file.display()
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Result<&DeclaredBundle> {
        self.bundles.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.bundles.keys().map(String::as_str).collect();
            Error::NotFound(format!(
                "no bundle '{name}' (declared: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }
}

fn load_declaration(file: &Path) -> Result<DeclaredBundle> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let origin = file.display().to_string();
    let mut declaration: BundleDeclaration =
        toml::from_str(&text).map_err(|e| Error::Config(format!("{origin}: {e}")))?;
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if declaration.name.is_empty() {
        declaration.name = stem.clone();
    }
    check_bundle_name(&declaration.name).map_err(|e| Error::Config(format!("{origin}: {e}")))?;
    if declaration.name != stem {
        return Err(Error::Config(format!(
            "{origin}: name = '{}' must equal the file name '{stem}'",
            declaration.name
        )));
    }
    if let Some(source) = declaration.source.as_mut() {
        let dir = file.parent().unwrap_or(Path::new("."));
        source.resolve(dir, &origin)?;
        if declaration.title.trim().is_empty() {
            declaration.title = declaration.name.clone();
        }
        if declaration.test || declaration.promote_to.is_some() || !declaration.include.is_empty() {
            return Err(Error::Config(format!(
                "{origin}: an external bundle takes no test, promote_to or include"
            )));
        }
    }
    if declaration.title.trim().is_empty() {
        return Err(Error::Config(format!("{origin}: title is empty")));
    }
    check_policy_name(&declaration.admission_policy)
        .map_err(|e| Error::Config(format!("{origin}: {e}")))?;
    if declaration.promote_to.is_some() && !declaration.test {
        return Err(Error::Config(format!(
            "{origin}: promote_to is only for test bundles (set test = true)"
        )));
    }
    let seeds = load_seeds(&file.with_extension("").join("anchors"))?;
    Ok(DeclaredBundle {
        declaration,
        file: file.to_path_buf(),
        seeds,
    })
}

fn load_seeds(dir: &Path) -> Result<Vec<SeedFile>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| SEED_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            Ok(SeedFile { path, bytes })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_declarations_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles");
        let inv = Inventory::load(&dir).unwrap();
        let names: Vec<&str> = inv.bundles.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "directtrust-accredited",
                "directtrust-interop-test",
                "nate-bluebutton",
                "patient",
                "patient-test",
                "provider",
                "provider-test"
            ]
        );
        // The example external sources ship disabled, with placeholder pins.
        let externals: Vec<(&str, bool)> = inv.externals().map(|(n, s)| (n, s.enabled)).collect();
        assert_eq!(externals.len(), 3);
        assert!(externals.iter().all(|(_, enabled)| !enabled));
        assert_eq!(
            inv.get("provider-test")
                .unwrap()
                .declaration
                .promote_to
                .as_deref(),
            Some("provider")
        );
    }

    #[test]
    fn minimal_external_declaration() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("community.toml"),
            "[source]\nurl = \"https://bundles.example.org/community.p7b\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("combined.toml"),
            "title = \"Combined\"\ninclude = [\"community\"]\n",
        )
        .unwrap();
        let inv = Inventory::load(dir.path()).unwrap();
        let (name, source) = inv.externals().next().unwrap();
        assert_eq!(name, "community");
        assert_eq!(inv.get("community").unwrap().declaration.title, "community");
        assert!(source.enabled && source.pins.is_empty());
        assert_eq!(source.schedule, crate::external::source::DEFAULT_SCHEDULE);
        assert_eq!(source.interval(), std::time::Duration::from_secs(24 * 3600));
        assert_eq!(inv.includers("community"), ["combined"]);
    }

    #[test]
    fn strict_loading() {
        let cases: &[(&str, &str, &str)] = &[
            ("fail/unknown-key", "p.toml", "title = \"P\"\ncolour = 1\n"),
            (
                "fail/name-mismatch",
                "p.toml",
                "name = \"q\"\ntitle = \"P\"\n",
            ),
            ("fail/bad-name", "P_1.toml", "title = \"P\"\n"),
            (
                "fail/promote-missing",
                "p.toml",
                "title = \"P\"\ntest = true\npromote_to = \"nope\"\n",
            ),
            (
                "fail/promote-from-production",
                "p.toml",
                "title = \"P\"\npromote_to = \"p\"\n",
            ),
            ("fail/empty-title", "p.toml", "title = \" \"\n"),
            (
                "fail/plain-http",
                "e.toml",
                "[source]\nurl = \"http://example.org/b.p7b\"\n",
            ),
            (
                "fail/placeholder-pin-enabled",
                "e.toml",
                "[source]\nurl = \"https://example.org/b.p7b\"\nsigner_fingerprints = [\"FILL-IN\"]\n",
            ),
            (
                "fail/bad-schedule",
                "e.toml",
                "[source]\nurl = \"https://example.org/b.p7b\"\nschedule = \"daily\"\n",
            ),
            (
                "fail/five-field-cron",
                "e.toml",
                "[source]\nurl = \"https://example.org/b.p7b\"\nschedule = \"0 4 * * *\"\n",
            ),
            (
                "fail/unknown-source-key",
                "e.toml",
                "[source]\nurl = \"https://example.org/b.p7b\"\ncolour = 1\n",
            ),
            (
                "fail/missing-signer-file",
                "e.toml",
                "[source]\nurl = \"https://example.org/b.p7b\"\nsigners = [\"nope.pem\"]\n",
            ),
            (
                "fail/include-local",
                "p.toml",
                "title = \"P\"\ninclude = [\"p\"]\n",
            ),
            (
                "fail/external-with-test",
                "e.toml",
                "test = true\n[source]\nurl = \"https://example.org/b.p7b\"\n",
            ),
        ];
        for (name, file, text) in cases {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(file), text).unwrap();
            let err = Inventory::load(dir.path()).unwrap_err();
            assert!(
                matches!(err.code(), "config_invalid" | "io_error"),
                "{name}: {err}"
            );
        }
    }
}
