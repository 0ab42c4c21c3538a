use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use gateway::config::{Config, LogFormat};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let env: Vec<(String, String)> = std::env::vars().collect();
            let config = match Config::load(config, &env) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("gateway: configuration error: {e}");
                    return ExitCode::from(2);
                }
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

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
