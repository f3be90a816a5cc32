//! Process entry: parse the command line, set up logging, run, and turn errors into a message
//! and an exit status.

use std::io::Write;

use clap::Parser;

use anchorage::cli::{self, Cli, Output};
use anchorage::Error;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
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
