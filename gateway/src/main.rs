use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use gateway::config::{Config, LogFormat};

/// glibc's malloc spent a third of the request threads' time under load (arena locks, chunk
/// consolidation): every request builds and drops thousands of small JSON and FHIRPath values.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "gateway", version, about = "FHIR R4 gateway for Japan's EHR information sharing service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the FHIR server.
    Serve {
        /// TOML configuration file (default: ./gateway.toml if present; env GATEWAY_CONFIG).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate FHIR JSON files against base R4, their meta.profile and the gateway rules;
    /// prints one OperationOutcome (one JSON line) per file; exit 1 when any has an error.
    Validate {
        /// Also validate against this profile (canonical URL, optionally `|version`).
        #[arg(long)]
        profile: Vec<String>,
        /// Conformance resources to add (StructureDefinition, ValueSet, CodeSystem JSON files).
        #[arg(long)]
        load: Vec<PathBuf>,
        /// TOML configuration file, for the package directories.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The files to validate.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { profile, load, config, files } => validate(config, profile, load, files),
        Command::Serve { config } => {
            let config = match load_config(config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_tracing(config.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
            match runtime.block_on(gateway::server::serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("gateway: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The configuration from the file and the environment; exit code 2 naming the bad setting.
fn load_config(file: Option<PathBuf>) -> Result<Config, ExitCode> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    Config::load(file, &env).map_err(|e| {
        eprintln!("gateway: configuration error: {e}");
        ExitCode::from(2)
    })
}

fn validate(config: Option<PathBuf>, profiles: Vec<String>, load: Vec<PathBuf>, files: Vec<PathBuf>) -> ExitCode {
    let config = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let store = match fhir_profiles::PackageStore::load_with_rules(&config.packages, Some(&config.definitions)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gateway: cannot load FHIR packages: {e}");
            return ExitCode::from(2);
        }
    };
    for path in &load {
        if let Err(e) = store.add_file(path) {
            eprintln!("gateway: --load {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    let validator = fhir_profiles::Validator::new(store);
    let options = fhir_profiles::ValidationOptions { profiles };
    let mut failed = false;
    for path in &files {
        let issues = match std::fs::read(path) {
            Ok(bytes) => validator.validate_json(&bytes, &options),
            Err(e) => vec![fhir_profiles::Issue::new(
                fhir_profiles::Severity::Fatal,
                "not-found",
                "",
                format!("cannot read {}: {e}", path.display()),
            )],
        };
        failed |= fhir_profiles::has_errors(&issues);
        println!("{}", fhir_profiles::to_operation_outcome(&issues));
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
