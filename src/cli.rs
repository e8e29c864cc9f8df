//! The command line: parse arguments, load the settings, run one command, map the outcome
//! to an exit code. Errors print as one line on stderr and exit non-zero.
//!
//! Only one process can open the store. When `serve` holds it, the commands that need it
//! are sent to the daemon over its admin socket and run there ([`crate::commands::admin`]),
//! with the same output and exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::{self, Command, Output};
use crate::config::Settings;
use crate::daemon::{Application, shutdown_signal};
use crate::parts::Parts;
use crate::store::StoreError;

#[derive(Parser)]
#[command(
    name = "paperboy",
    version,
    about = "Trending research papers in your inbox"
)]
pub struct Cli {
    /// The config file (default: $PAPERBOY_CONFIG, else ./paperboy.toml, else built-in defaults)
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: TopLevel,
}

#[derive(Subcommand, Debug)]
pub enum TopLevel {
    /// The daemon: send editions on the schedule and serve the subscribe, confirm,
    /// unsubscribe and preferences pages, until SIGTERM or Ctrl-C
    Serve,
    #[command(flatten)]
    OnStore(Command),
    /// Validate the config and secrets and print the effective settings (secrets masked)
    CheckConfig,
    /// Fill an empty data directory from a backup FILE
    Restore { file: PathBuf },
}

pub fn main() -> ExitCode {
    crate::files::private_by_default();
    let cli = Cli::parse();
    crate::telemetry::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", crate::telemetry::one_line(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let (settings, origin) = Settings::load(cli.config.as_deref())?;
    let command = match cli.command {
        TopLevel::CheckConfig => {
            // What a start would build from them, so that a key that cannot sign or a TLS
            // set-up that fails shows here, not at the first send.
            crate::mail::Mailer::verify_settings(&settings.mail)?;
            println!("# effective settings, from {origin}");
            print!("{}", settings.to_masked_toml());
            return Ok(ExitCode::SUCCESS);
        }
        TopLevel::Serve => {
            tracing::info!(config = %origin, "starting");
            let application = Application::build(settings).await?;
            application.run_until_stopped(shutdown_signal()).await?;
            return Ok(ExitCode::SUCCESS);
        }
        TopLevel::Restore { file } => {
            let bytes = std::fs::read(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let report = crate::commands::backup::restore(&settings, &bytes).await?;
            println!("{report}");
            return Ok(ExitCode::SUCCESS);
        }
        TopLevel::OnStore(command) => command,
    };
    let input = match command.input_file() {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let output = match Parts::build(&settings) {
        Ok(parts) => {
            let mut out = Output::default();
            match commands::execute(&parts.commands, &command, input, &mut out).await {
                Ok(()) => out,
                Err(e) => {
                    out.fail(&e);
                    out
                }
            }
        }
        Err(e) if matches!(e.downcast_ref::<StoreError>(), Some(StoreError::Locked(_))) => {
            // The daemon holds the store: let it do the work.
            match crate::commands::admin::request(&settings.data_dir, &command, input).await {
                Ok(out) => out,
                Err(socket_error) => {
                    return Err(
                        e.context(format!("and the daemon's admin socket: {socket_error:#}"))
                    );
                }
            }
        }
        Err(e) => return Err(e),
    };
    finish(&command, output)
}

/// Prints what a command produced, writes the file it made, and gives its exit code.
fn finish(command: &Command, out: Output) -> anyhow::Result<ExitCode> {
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    if let (Some(path), Some(bytes)) = (command.output_file(), &out.file) {
        // Backups hold the link-signing key: only their owner may read them.
        crate::files::write_private(path, bytes)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(ExitCode::from(out.code))
}
