//! The admin socket: how `subscribers …`, `backup`, `preview` and `run-once` work while
//! `serve` holds the store. The CLI sends the parsed command (and the content of a file it
//! was given) as one JSON line to `data_dir/admin.sock`; the daemon runs the very same
//! command code and answers with its output, file and exit code. Only [`Command`]s travel:
//! `serve`, `restore` and `check-config` cannot be asked of a running daemon. The socket is
//! mode 0600: only the service's own user (and root) can use it.
//!
//! The bounce socket (`mail.bounce_socket`) speaks the same, but takes only `bounce`, from
//! any local user: a mail server's `pipe` runs `paperboy bounce` as a user of its own. It
//! trusts its callers no more than the bounce address trusts whoever mails it: a report
//! counts only when a signed token (or paperboy's own Message-ID and List-Id) names whom
//! it is about.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::{Command, Context, Output};

/// The most a request may carry (an import file included).
const MAX_REQUEST: usize = 64 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct Request {
    command: Command,
    input: Option<String>,
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// Sends a command to the running daemon and returns what it produced.
pub async fn request(
    data_dir: &Path,
    command: &Command,
    input: Option<Vec<u8>>,
) -> anyhow::Result<Output> {
    request_at(&socket_path(data_dir), command, input).await
}

/// Sends a command to the daemon's socket at `path`.
pub async fn request_at(
    path: &Path,
    command: &Command,
    input: Option<Vec<u8>>,
) -> anyhow::Result<Output> {
    let stream = UnixStream::connect(path)
        .await
        .with_context(|| format!("cannot connect to {}", path.display()))?;
    let (read, mut write) = stream.into_split();
    let req = Request {
        command: command.clone(),
        input: input.map(|b| STANDARD.encode(b)),
    };
    let mut line = serde_json::to_vec(&req)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    write.shutdown().await?;
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await?;
    serde_json::from_str(&answer).context("the daemon's answer cannot be read")
}

/// What a socket takes: which commands, how large a request, how many at a time.
#[derive(Clone, Copy)]
struct Policy {
    allowed: fn(&Command) -> bool,
    max_request: usize,
    /// Requests handled at once; more wait to be accepted.
    at_once: usize,
}

/// The admin socket's users are root and the service's own.
const ADMIN: Policy = Policy {
    allowed: |_| true,
    max_request: MAX_REQUEST,
    at_once: 64,
};

/// Anyone on the machine may use the bounce socket: one report (base64, in JSON) at most,
/// and a few at a time, so that no local user can make the daemon hold much memory.
const BOUNCES: Policy = Policy {
    allowed: |command| matches!(command, Command::Bounce { .. }),
    max_request: (crate::bounce::MAX_MESSAGE_BYTES + 1).div_ceil(3) * 4 + 64 * 1024,
    at_once: 4,
};

/// Serves the admin socket of `data_dir` until the process ends.
pub async fn serve(ctx: Arc<Context>, data_dir: &Path) -> anyhow::Result<()> {
    let listener = bind(&socket_path(data_dir), 0o600)?;
    accept(ctx, listener, ADMIN).await
}

/// Serves the bounce socket (made by [`bind`] with mode 0666) until the process ends:
/// `bounce` only, from anyone.
pub async fn serve_bounces(ctx: Arc<Context>, listener: UnixListener) -> anyhow::Result<()> {
    accept(ctx, listener, BOUNCES).await
}

/// A socket at `path` with file mode `mode`, in place of a socket left there.
pub fn bind(path: &Path, mode: u32) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    // A socket file left by a killed daemon: we hold the store lock, so it is not in use.
    // Only a socket: a path set to an ordinary file by mistake is an error, not a deletion.
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(listener)
}

async fn accept(ctx: Arc<Context>, listener: UnixListener, policy: Policy) -> anyhow::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(policy.at_once));
    loop {
        let slot = slots.clone().acquire_owned().await?;
        let (stream, _) = listener.accept().await?;
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(&ctx, stream, policy).await {
                tracing::warn!(error = %format!("{e:#}"), "admin request failed");
            }
            drop(slot);
        });
    }
}

async fn handle(ctx: &Context, stream: UnixStream, policy: Policy) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(policy.max_request as u64));
    tokio::time::timeout(Duration::from_secs(60), reader.read_line(&mut line))
        .await
        .context("the request did not arrive in time")??;
    let req: Request = serde_json::from_str(&line).context("a malformed request")?;
    let mut out = Output::default();
    if (policy.allowed)(&req.command) {
        let input = req.input.map(|s| STANDARD.decode(s)).transpose()?;
        if let Err(e) = super::execute(ctx, &req.command, input, &mut out).await {
            out.fail(&e);
        }
    } else {
        out.fail(&anyhow::anyhow!(
            "this socket takes only `paperboy bounce`; other commands go through the admin socket"
        ));
    }
    let mut answer = serde_json::to_vec(&out)?;
    answer.push(b'\n');
    write.write_all(&answer).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket left by a killed daemon is replaced; a path that names an ordinary file by
    /// mistake is an error and the file stays.
    #[tokio::test]
    async fn bind_replaces_only_a_socket() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bounce.sock");
        drop(bind(&socket, 0o666).unwrap());
        let again = bind(&socket, 0o666).unwrap();
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o666);
        drop(again);

        let file = dir.path().join("notes.txt");
        std::fs::write(&file, "keep me").unwrap();
        assert!(bind(&file, 0o666).is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    }
}
