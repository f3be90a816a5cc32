//! The external-bundle refresh driver, above `external/` (fetching, source declarations,
//! statuses) and `authority` (the judgement: verify, admit, keep the last good copy,
//! publish): one manual or scheduled refresh of a source (the download here, the authority's
//! judgement on a blocking thread), and the tokio-cron-scheduler jobs `serve` runs: one per
//! enabled source on its cron schedule, a catch-up refresh at start-up for a source whose last
//! good copy is older than its interval, and an hourly staleness check.

use std::sync::Arc;

use tokio_cron_scheduler::{Job, JobScheduler};

use crate::authority::{Authority, RefreshReport, Staleness};
use crate::error::{Error, Result};
use crate::external::fetch;

/// Refreshes run one at a time, so a manual run and a scheduled one never race for the
/// same version number.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Downloads and applies one source now.
pub async fn refresh(authority: Arc<Authority>, name: &str, actor: &str) -> Result<RefreshReport> {
    refresh_with(authority, name, actor, false).await
}

/// Like [`refresh`]; with `accept_older`, a copy signed earlier than the last accepted one
/// (otherwise refused as `rollback`) is accepted, and the audit log records both signing
/// times. Only an operator's explicit `refresh run NAME --accept-older` sets it.
pub async fn refresh_with(
    authority: Arc<Authority>,
    name: &str,
    actor: &str,
    accept_older: bool,
) -> Result<RefreshReport> {
    let source = authority.external_source(name)?.clone();
    if !source.enabled {
        return Err(Error::InvalidInput(format!(
            "the external source '{name}' is disabled (set enabled = true in its declaration after filling in its signer pins)"
        )));
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let validators = authority.external_validators(name)?;
    let started = authority.now();
    let (outcome, tries) = fetch::fetch(&source, &validators).await;
    let (name, actor) = (name.to_string(), actor.to_string());
    tokio::task::spawn_blocking(move || {
        authority.apply_refresh(&name, outcome, tries, started, &actor, accept_older)
    })
    .await
    .map_err(|e| Error::Store(format!("the refresh task failed: {e}")))?
}

/// Names of the enabled sources.
pub fn enabled_sources(authority: &Authority) -> Vec<String> {
    authority
        .inventory()
        .externals()
        .filter(|(_, s)| s.enabled)
        .map(|(n, _)| n.to_string())
        .collect()
}

/// Starts the jobs; the caller shuts the scheduler down with the server.
/// What a refresh publishes is served at once: the HTTP downloads follow the authority's
/// publications by themselves.
pub async fn start(authority: Arc<Authority>) -> Result<JobScheduler> {
    let fail = |e: tokio_cron_scheduler::JobSchedulerError| {
        Error::Config(format!("the refresh scheduler: {e}"))
    };
    let scheduler = JobScheduler::new().await.map_err(fail)?;
    for name in enabled_sources(&authority) {
        let schedule = authority.external_source(&name)?.schedule.clone();
        let (a, n) = (authority.clone(), name.clone());
        let job = Job::new_async(schedule.as_str(), move |_, _| {
            let (a, n) = (a.clone(), n.clone());
            Box::pin(async move { run_logged(a, &n).await })
        })
        .map_err(fail)?;
        scheduler.add(job).await.map_err(fail)?;
        if authority.external_refresh_due(&name) {
            let a = authority.clone();
            tokio::spawn(async move { run_logged(a, &name).await });
        }
    }
    let a = authority.clone();
    let check = Job::new_async("0 7 * * * *", move |_, _| {
        let a = a.clone();
        Box::pin(async move { check_staleness(a).await })
    })
    .map_err(fail)?;
    scheduler.add(check).await.map_err(fail)?;
    scheduler.start().await.map_err(fail)?;
    Ok(scheduler)
}

async fn run_logged(authority: Arc<Authority>, name: &str) {
    if let Err(e) = refresh(authority, name, "scheduler").await {
        tracing::error!(source = %name, error = %e, code = e.code(), "external bundle refresh could not run")
    }
}

/// Logs stale sources and withdraws those past their fail threshold that must not be
/// republished stale.
async fn check_staleness(authority: Arc<Authority>) {
    let a = authority.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<()> {
        for view in a.source_views()? {
            if !view.enabled || !view.stale {
                continue;
            }
            tracing::warn!(source = %view.name, staleness = ?view.staleness, last_good_at = ?view.last_good_at, "external bundle is stale");
            if view.staleness == Staleness::StaleFail {
                a.republish_includers(&view.name, "scheduler")?;
            }
        }
        Ok(())
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "staleness check failed"),
        Err(e) => tracing::error!(error = %e, "staleness check task failed"),
    }
}
