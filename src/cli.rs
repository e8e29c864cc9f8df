//! The command line: parse arguments, load the settings, run one command, map the outcome
//! to an exit code. Errors print as one line on stderr and exit non-zero.
//!
//! Only one process can open the store. When `serve` holds it, the commands that need it
//! are sent to the daemon over its admin socket and run there ([`crate::commands::admin`]),
//! with the same output and exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

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
    /// Print the shell completion script for SHELL
    Completions { shell: clap_complete::Shell },
    /// Print the manual page, paperboy(1), as roff: `paperboy man | man -l -` reads it
    Man,
    /// Try paperboy offline: the web pages on sample papers, mail shown in the browser
    /// instead of sent, in a data directory of its own (the config file is not read)
    Demo {
        /// Where the pages listen (default: 127.0.0.1:8080, else any free port)
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<std::net::SocketAddr>,
        /// Keep the demo's data in DIR, a new or empty directory or an earlier demo's
        /// (default: a temporary directory, deleted at the end)
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    crate::files::private_by_default();
    let cli = Cli::parse();
    // Made from the definitions above alone (the package's man page and completions too):
    // no config, no store, no runtime.
    match cli.command {
        TopLevel::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "paperboy",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        TopLevel::Man => {
            return match manual_page(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    // The demo's terminal shows its own lines; its logs only when something goes wrong.
    let demo = matches!(cli.command, TopLevel::Demo { .. });
    crate::telemetry::init_at(if demo { "warn" } else { "info" });
    // A mail server reads the bounce intake's exit code: sysexits, never a bare 1.
    let bounce = matches!(cli.command, TopLevel::OnStore(Command::Bounce { .. }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", crate::telemetry::one_line(e.as_ref()));
            if bounce {
                ExitCode::from(crate::bounce::exit_code_before_start(&e))
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Before the settings are loaded: the demo reads no config and no state of the real one.
    if let TopLevel::Demo { listen, data } = cli.command {
        crate::demo::run(crate::demo::Options { listen, data }).await?;
        return Ok(ExitCode::SUCCESS);
    }
    // `bounce` may be run by a mail server as a user that cannot read the secret files; it
    // reads them only when it works on the store itself.
    let bounce = matches!(cli.command, TopLevel::OnStore(Command::Bounce { .. }));
    let (mut settings, origin) = Settings::load_without_secrets(cli.config.as_deref())?;
    if !bounce {
        settings.load_secrets()?;
    }
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
        TopLevel::Completions { .. } | TopLevel::Man => unreachable!("handled in main"),
        TopLevel::Demo { .. } => unreachable!("handled above"),
    };
    let input = match command.input_file() {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
        ),
        None if command.reads_stdin() => Some(
            crate::bounce::read_message(std::io::stdin().lock())
                .map_err(crate::bounce::BounceError::from)?,
        ),
        None => None,
    };
    if let Some(socket) = settings.mail.bounce_socket.as_deref().filter(|_| bounce) {
        match crate::commands::admin::request_at(socket, &command, input.clone()).await {
            Ok(output) => return finish(&command, output),
            // No daemon there: the report is recorded in the store, as without the socket.
            Err(e) if not_listening(&e) => {}
            Err(e) => return Err(e.context("mail.bounce_socket")),
        }
    }
    if bounce {
        settings.load_secrets()?;
    }
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

/// Whether connecting to a socket failed because nothing listens there (no file, or a file
/// left by a daemon that is gone), rather than during the exchange.
fn not_listening(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            )
        })
}

/// paperboy(1): one page with every command and its options. clap_mangen makes a page per
/// command; its sections are reused here, each command's under a heading of its own in
/// COMMANDS, so that `man paperboy` alone says everything.
pub fn manual_page(w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let top = clap_mangen::Man::new(cli.clone());
    let mut head = Vec::new();
    top.render_title(&mut head)?;
    top.render_name_section(&mut head)?;
    top.render_synopsis_section(&mut head)?;
    top.render_description_section(&mut head)?;
    top.render_options_section(&mut head)?;
    let mut page = String::from_utf8_lossy(&head).into_owned();
    page.push_str(".SH COMMANDS\n");
    for command in leaf_commands(&cli) {
        // build() named each command in full: "paperboy subscribers add".
        let path = command.get_bin_name().unwrap_or(command.get_name());
        page.push_str(&format!(".SS \"{path}\"\n"));
        // --config and --help are described once, at the top of the page.
        let command = command.clone().mut_args(|a| {
            let said_above = a.is_global_set() || matches!(a.get_action(), clap::ArgAction::Help);
            a.hide(said_above)
        });
        let man = clap_mangen::Man::new(command.clone());
        let mut section = Vec::new();
        man.render_synopsis_section(&mut section)?;
        man.render_description_section(&mut section)?;
        if command.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut section)?;
        }
        // Within COMMANDS, a command's parts are paragraphs, not sections of the page.
        for line in String::from_utf8_lossy(&section).lines() {
            page.push_str(if line.starts_with(".SH ") {
                ".PP"
            } else {
                line
            });
            page.push('\n');
        }
    }
    let mut tail = Vec::new();
    top.render_version_section(&mut tail)?;
    page.push_str(&String::from_utf8_lossy(&tail));
    // Every part rendered on its own begins by defining the same string (Aq): once will do.
    let mut defined = std::collections::HashSet::new();
    for line in page.lines() {
        let defines_aq = line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq");
        if !defines_aq || defined.insert(line) {
            writeln!(w, "{line}")?;
        }
    }
    Ok(())
}

/// Every command that does something, depth first; groups such as `subscribers` are
/// represented by their commands.
fn leaf_commands(cmd: &clap::Command) -> Vec<&clap::Command> {
    let mut found = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.has_subcommands() {
            found.extend(leaf_commands(sub));
        } else {
            found.push(sub);
        }
    }
    found
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
