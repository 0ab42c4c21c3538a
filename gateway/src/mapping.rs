//! Mapping tables: loaded and activated at start-up, applied to every accepted submission.

use std::{path::Path, sync::Arc};

use anyhow::Context as _;
use terminology::{CheckOptions, Mapper, TableRegistry, TerminologyService};

/// Load every table under `dir`, activate each version at its effective date, and build the
/// mapper for today. A bad table stops start-up with the report that names its rows.
pub fn load(dir: &Path, terminology: &TerminologyService) -> anyhow::Result<Arc<Mapper>> {
    let snapshot = terminology.snapshot();
    let known = |system: &str| snapshot.knows_system(system);
    let tables = terminology::load_tables_dir(dir, &CheckOptions { known_system: Some(&known), ..Default::default() })
        .map_err(|bad| {
            let reports: Vec<String> =
                bad.iter().map(|(path, report)| format!("{}: {}", path.display(), report.to_operation_outcome())).collect();
            anyhow::anyhow!("mapping tables refused:\n{}", reports.join("\n"))
        })?;
    let mut registry = TableRegistry::new();
    for table in tables {
        let (name, version, date) = (table.meta.name.clone(), table.meta.version.clone(), table.meta.effective_date.clone());
        registry.upload(table, "start-up").with_context(|| format!("mapping table {name}"))?;
        registry.activate(&name, &version, &date, "start-up").with_context(|| format!("activating mapping table {name}"))?;
    }
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    terminology.install_tables(&registry.all_versions(), &registry.active_at(&today));
    Ok(Arc::new(registry.mapper_at(&today, snapshot.systems())))
}
