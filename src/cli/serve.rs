//! `anchorage serve`: the process side of running the service. `Authority::bring_up` does
//! everything before listening (one call, so this orders nothing); here is what only a
//! process has: the tokio runtime, the HTTP and TLS listeners, the files that tell the CLI
//! where the server is (`serve.json`, the local control token), the external-bundle scheduler,
//! and a graceful stop on Ctrl-C or SIGTERM.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use zeroize::Zeroizing;

use super::lifecycle::{print_created, warn_if_evaluation};
use super::remote::{CONTROL_TOKEN_FILE, SERVE_FILE};
use super::{cli_actor, external, write_file, Output};
use crate::authority::Authority;
use crate::clock::SystemClock;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::http;

pub(super) fn serve(
    mut config: Config,
    listen: Option<std::net::SocketAddr>,
    write_config: bool,
) -> Result<()> {
    if let Some(addr) = listen {
        config.listen = addr;
        if write_config
            && !config.data_dir.join(config::DATA_DIR_CONFIG).exists()
            && config.public_url == Config::default().public_url
        {
            // The wildcard address is no URL a relying party can fetch, and it would stay in
            // every certificate: an evaluation start on 0.0.0.0 names loopback instead
            // (`config check` refuses a wildcard public_url).
            let mut host = addr;
            if addr.ip().is_unspecified() {
                host.set_ip(match addr {
                    std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            config.public_url = format!("http://{host}");
        }
    }
    let up = Authority::bring_up(
        config.clone(),
        Arc::new(SystemClock),
        &cli_actor(),
        write_config,
    )?;
    match &up.created {
        Some((report, source)) => {
            println!(
                "first start: no CA in {}, created an evaluation CA hierarchy",
                config.data_dir.display()
            );
            print_created(Output::Text, &config.data_dir, report, source)?
        }
        None => warn_if_evaluation(&up.passphrase_source),
    }
    for line in &up.notes {
        println!("{line}");
    }
    let authority = up.authority;
    // A first start may have filled in the evaluation domain.
    let config = authority.config().clone();
    let tls_config = config
        .tls
        .as_ref()
        .map(|t| http::tls::server_config(&t.cert_file, &t.key_file))
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::io(config.listen.to_string(), e))?;
        let local = listener.local_addr().map_err(|e| Error::io("listener", e))?;
        let tls = match (&config.tls, tls_config) {
            (Some(t), Some(server_config)) => {
                let tcp = tokio::net::TcpListener::bind(t.listen)
                    .await
                    .map_err(|e| Error::io(t.listen.to_string(), e))?;
                Some(http::tls::TlsListener::new(tcp, server_config).map_err(|e| Error::io("TLS listener", e))?)
            }
            _ => None,
        };
        let base = format!("http://{local}");
        let bundle_base = match (&tls, &config.tls) {
            (Some(l), Some(_)) => format!("https://{}", axum::serve::Listener::local_addr(l).map_err(|e| Error::io("TLS listener", e))?),
            _ => base.clone(),
        };
        let mut state = http::AppState::new(Arc::new(authority));
        let control = control_files(&config.data_dir, &base)?;
        state.control_hash = Some(Arc::from(crate::authority::token_hash(&control).as_str()));
        let stop = shutdown_signal()?;
        println!("anchorage listening on {base}");
        println!("  data directory:   {}", config.data_dir.display());
        println!("  managed domains:  {}", config.managed_domains.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", "));
        println!("  public URL (in certificates): {}", config.public_url);
        println!("  CA certificates:  {base}/ca/root.cer  {base}/ca/issuing.cer  {base}/ca/chain.pem");
        println!("  CRLs:             {base}/crl/root.crl  {base}/crl/issuing.crl");
        println!("  trust bundles:    {bundle_base}/bundles/  {bundle_base}/bundles.json");
        println!("  API:              {base}/api/v1/certificates  (token: anchorage token create --role registrar --domain '*')");
        println!("  health:           {base}/healthz");
        let scheduler = external::start_scheduler(&state).await?;
        let result = http::serve(state, listener, tls, stop)
            .await
            .map_err(|e| Error::io("http server", e));
        external::stop_scheduler(scheduler).await;
        let _ = std::fs::remove_file(config.data_dir.join(SERVE_FILE));
        let _ = std::fs::remove_file(config.data_dir.join(CONTROL_TOKEN_FILE));
        result
    })
}

/// Writes where the server listens and a fresh local control token (0600) for the CLI.
fn control_files(data_dir: &Path, base: &str) -> Result<Zeroizing<String>> {
    use aws_lc_rs::rand::SecureRandom;
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Generation("the system random generator failed".into()))?;
    let token = Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    write_file(&data_dir.join(CONTROL_TOKEN_FILE), token.as_bytes(), true)?;
    let serve = json!({"url": base, "pid": std::process::id()});
    write_file(
        &data_dir.join(SERVE_FILE),
        serve.to_string().as_bytes(),
        false,
    )?;
    Ok(token)
}

/// The stop signals (SIGTERM, SIGINT), registered before the server says it listens: a
/// SIGTERM that arrives right after that line must stop it gracefully, not kill it with the
/// default action (tokio installs a handler when the stream is created, not when awaited).
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| Error::io("the SIGTERM handler", e))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| Error::io("the SIGINT handler", e))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("shutting down");
    })
}
