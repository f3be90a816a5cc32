//! Publication for certificate discovery: renderers from store data to bytes (`dns` for RFC
//! 4398 zone files, `ldif` for RFC 2849 directory loads), the one atomic file writer, and the
//! reload hook that tells the operator's DNS server about a new zone. Which data to render,
//! and when, is decided by `authority`.

pub mod dns;
pub mod ldif;
pub mod writer;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a reload command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReloadOutcome {
    NotConfigured,
    Ok,
    Failed { message: String },
}

/// Runs the reload command with `{domain}` and `{file}` substituted; no shell. Killed after
/// `timeout`. The written file is never touched here, whatever happens.
pub fn reload(command: &[String], domain: &str, file: &Path, timeout: Duration) -> ReloadOutcome {
    let Some((program, args)) = command.split_first() else {
        return ReloadOutcome::NotConfigured;
    };
    let file = file.display().to_string();
    let expand = |s: &String| s.replace("{domain}", domain).replace("{file}", &file);
    let child = Command::new(expand(program))
        .args(args.iter().map(expand))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return ReloadOutcome::Failed {
                message: format!("cannot start '{program}': {e}"),
            }
        }
    };
    let deadline = crate::clock::monotonic_now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return ReloadOutcome::Ok,
            Ok(Some(status)) => {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                let detail: String = stderr.trim().chars().take(500).collect();
                return ReloadOutcome::Failed {
                    message: format!("'{program}' exited with {status}: {detail}"),
                };
            }
            Ok(None) if crate::clock::monotonic_now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return ReloadOutcome::Failed {
                    message: format!("'{program}' did not finish within {timeout:?}; killed"),
                };
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                return ReloadOutcome::Failed {
                    message: format!("waiting for '{program}': {e}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reload_outcomes() {
        let f = Path::new("/tmp/x.zone");
        let t = Duration::from_secs(5);
        assert_eq!(reload(&[], "d", f, t), ReloadOutcome::NotConfigured);
        assert_eq!(reload(&cmd(&["true"]), "d", f, t), ReloadOutcome::Ok);
        let ReloadOutcome::Failed { message } = reload(
            &cmd(&["sh", "-c", "echo no {domain} >&2; exit 3"]),
            "d.example",
            f,
            t,
        ) else {
            panic!("a failing command is a failure")
        };
        assert!(message.contains("no d.example"), "{message}");
        let slow = reload(&cmd(&["sleep", "5"]), "d", f, Duration::from_millis(100));
        assert!(matches!(slow, ReloadOutcome::Failed { .. }));
        assert!(matches!(
            reload(&cmd(&["/nonexistent/reload"]), "d", f, t),
            ReloadOutcome::Failed { .. }
        ));
    }
}
