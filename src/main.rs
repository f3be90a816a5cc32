//! Process entry: parse the command line, set up logging, run, and turn errors into a message
//! and an exit status.

use std::io::Write;

use clap::Parser;

use anchorage::cli::{self, Cli, Output};
use anchorage::Error;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, cli::Command::Serve { .. }) {
        trim_freed_memory();
    }
    let default_level = if matches!(cli.command, cli::Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let output = cli.output;
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            report(&e, output);
            std::process::ExitCode::FAILURE
        }
    }
}

fn report(e: &Error, output: Output) {
    let reasons = match e {
        Error::Denied(d) => d.reasons.clone(),
        _ => Vec::new(),
    };
    match output {
        // The refresh report, printed already, says what failed; one JSON document only.
        Output::Json if matches!(e, Error::RefreshFailed(_)) => {}
        Output::Json => {
            let body =
                serde_json::json!({"code": e.code(), "message": e.to_string(), "reasons": reasons});
            // A closed pipe (`... | head`) must not turn an error report into a panic.
            let _ = writeln!(
                std::io::stdout().lock(),
                "{}",
                serde_json::to_string_pretty(&body).unwrap_or_default()
            );
        }
        Output::Text => {
            match e {
                Error::Denied(_) => eprintln!("error[{}]: the request was refused:", e.code()),
                _ => eprintln!("error[{}]: {e}", e.code()),
            }
            for r in reasons {
                eprintln!("  - [{}] {}", r.code, r.message);
            }
        }
    }
}

/// Start-up frees large blocks (the Argon2 work areas that unlock the CA keys, sled's recovery
/// buffers) that glibc keeps instead of returning them, so an idle service held ~40 MB it no
/// longer used. A low trim threshold makes glibc give freed memory back. glibc reads tunables
/// only at process start, so `serve` re-executes itself once with it set (same PID, same
/// arguments); an operator's own GLIBC_TUNABLES is left alone.
fn trim_freed_memory() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072")
        .exec();
    // exec returns only on failure; run on with glibc's defaults.
    eprintln!("note: could not re-execute with a malloc trim threshold: {error}");
}
