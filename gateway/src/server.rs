//! Start-up: load packages, open storage, serve HTTP until SIGTERM / Ctrl-C.

use std::sync::Arc;

use anyhow::Context as _;

use crate::{
    api::{self, AppState},
    config::Config,
    metrics::Metrics,
    search::SearchIndex,
    store::Store,
};

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let load = |dirs: &[std::path::PathBuf]| {
        fhir_profiles::PackageStore::load_with_rules(dirs, Some(&config.definitions))
            .with_context(|| format!("loading FHIR packages from {dirs:?} with the rules in {}", config.definitions.display()))
    };
    let packages = load(&config.packages)?;
    // Compile the JP profiles and the base definitions of every FHIR type now, so that the first
    // submission does not pay for it (130-170 ms when only the JP profiles were compiled: the
    // datatypes and contained resources they use were compiled on first use).
    let definitions = packages.urls_of_type("StructureDefinition");
    let eager: Vec<&str> = definitions
        .iter()
        .map(String::as_str)
        .filter(|url| {
            url.starts_with("http://jpfhir.jp/")
                || packages.resolve(url).is_some_and(|sd| sd["derivation"] == "specialization")
        })
        .collect();
    let compile_started = std::time::Instant::now();
    for missing in packages.precompile(&eager) {
        tracing::warn!(profile = %missing, "profile could not be compiled");
    }
    tracing::info!(profiles = eager.len(), elapsed_ms = compile_started.elapsed().as_millis() as u64, "profiles compiled");
    let checkup_validator = if config.checkup_packages.is_empty() {
        None
    } else {
        let dirs: Vec<_> = config.packages.iter().chain(&config.checkup_packages).cloned().collect();
        let checkup = load(&dirs)?;
        let profile = crate::submission::SubmissionKind::ECheckupReport.bundle_profile();
        for missing in checkup.precompile(&[profile]) {
            tracing::warn!(profile = %missing, "checkup profile not found in checkup_packages");
        }
        Some(fhir_profiles::Validator::new(checkup))
    };
    let index = Arc::new(SearchIndex::new(packages.clone()));
    let terminology = terminology::TerminologyService::load(Some(packages.clone()), &[], &[])
        .context("building the terminology service")?;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "packages loaded");
    let store = Store::open(&config.database_url, config.db_pool_size, index.clone())
        .await
        .with_context(|| format!("opening the database {}", redact(&config.database_url)))?;
    let mapping = crate::mapping::MappingTables::start(&config.mapping_tables, terminology.clone(), store.clone()).await?;
    crate::mapping::remap::resume(&mapping).await.context("resuming the re-mapping job")?;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "mapping tables loaded");
    let capability = api::capability_statement(&index, crate::operations::OPERATIONS);
    let state = Arc::new(AppState {
        store,
        validator: fhir_profiles::Validator::with_terminology(packages, terminology.clone()),
        checkup_validator,
        terminology,
        mapping,
        auth: crate::auth::Auth::new(config.jwt_hs256_secret.as_deref()),
        metrics: Metrics::new(),
        max_body_bytes: config.max_body_bytes,
        capability,
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        database = %redact(&config.database_url),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "gateway ready"
    );
    axum::serve(listener, api::router(state)).with_graceful_shutdown(shutdown_signal()).await?;
    Ok(())
}

/// Hide a password in a database URL before logging it.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
