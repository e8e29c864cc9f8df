//! Running as a service: admin commands while `serve` holds the store, export and import,
//! backup and restore.

use std::time::{Duration, Instant};

use crate::helpers::{
    EngineKind, KillOnDrop, PageServer, Reply, SmtpSink, TestApp, WaitBounded, fixture, free_port,
};

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not happen in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A backup taken on one engine restores on the other, in both directions.
mod backups_cross_engines {
    use crate::helpers::EngineKind::{Sled, Sqlite};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn from_sled_to_sqlite() {
        super::admin_commands_reach_a_running_daemon_and_backups_restore(Sled, Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn from_sqlite_to_sled() {
        super::admin_commands_reach_a_running_daemon_and_backups_restore(Sqlite, Sled).await
    }
}

async fn admin_commands_reach_a_running_daemon_and_backups_restore(
    from: EngineKind,
    to: EngineKind,
) {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-08.html"))).await;
    let sink = SmtpSink::start();
    let app = TestApp::on(from, &pages.url(), sink.port, "");
    app.set("web.listen", format!("127.0.0.1:{}", free_port()));
    app.set("schedule.cron", "0 0 8 1 1 * 2099");
    app.add("ann@example.org", &["--confirmed", "--max-items", "3"]);
    assert!(app.run(&["run-once", "--date", "2025-12-08"]).ok());
    let digest = sink.messages().pop().unwrap();
    let unsubscribe = digest.header("List-Unsubscribe").unwrap();

    let mut daemon = KillOnDrop(app.command(&["serve"]).spawn().unwrap());
    let socket = app.dir.path().join("data/admin.sock");
    wait_until("the admin socket", || socket.exists());

    // The same commands, the same output, through the daemon.
    let r = app.run(&["subscribers", "add", "bob@example.com", "--confirmed"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "added bob@example.com (active)");
    let r = app.run(&["subscribers", "add", "bob@example.com"]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("already a subscriber"), "{}", r.stderr);
    let r = app.run(&["preview", "bob@example.com"]);
    assert!(
        r.ok() && r.stdout.starts_with("TRENDING PAPERS"),
        "{}",
        r.stderr
    );
    pages.serve_fixture("trending-2025-12-09.html");
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.stdout.contains("2 sent"), "{}", r.stdout);

    // Export, and import a changed file: checked whole, applied once.
    let r = app.run(&["subscribers", "export"]);
    assert!(r.ok());
    assert_eq!(r.stdout.lines().count(), 2);
    let changed = r.stdout.replace("\"max_items\":3", "\"max_items\":4")
        + "{\"email\":\"carl@example.net\",\"status\":\"active\",\"min_upvotes\":null,\"max_items\":null}\n";
    let file = app.dir.path().join("subscribers.jsonl");
    std::fs::write(&file, &changed).unwrap();
    let r = app.run(&["subscribers", "import", file.to_str().unwrap()]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "imported: 1 added, 1 updated, 1 unchanged");
    let r = app.run(&["subscribers", "import", file.to_str().unwrap()]);
    assert_eq!(r.stdout.trim(), "imported: 0 added, 0 updated, 3 unchanged");
    std::fs::write(&file, format!("{changed}not json\n")).unwrap();
    let r = app.run(&["subscribers", "import", file.to_str().unwrap()]);
    assert!(!r.ok() && r.stderr.contains("line 4"), "{}", r.stderr);

    let backup = app.dir.path().join("paperboy.backup");
    let r = app.run(&["backup", backup.to_str().unwrap()]);
    assert!(r.ok(), "{}", r.stderr);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a backup holds the signing key");
    }
    let listed = app.run(&["subscribers", "list", "--json"]).stdout;

    daemon.terminate(Duration::from_secs(20));
    let date = paperboy::domain::EditionDate::parse("2025-12-09").unwrap();
    let (outbox, archive) = {
        let store = app.store();
        (
            store.deliveries(date).unwrap(),
            store.edition(date).unwrap().unwrap().papers,
        )
    };
    assert_eq!(outbox.len(), 2);

    // Restore into an empty data directory, on the other engine: the same subscribers,
    // ledgers, outbox, archive and keys.
    let other = TestApp::on(to, &pages.url(), sink.port, "");
    let r = other.run(&["restore", backup.to_str().unwrap()]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(to.holds_store(&other.dir.path().join("data")));
    assert!(!from.holds_store(&other.dir.path().join("data")));
    assert_eq!(other.run(&["subscribers", "list", "--json"]).stdout, listed);
    {
        let store = other.store();
        assert_eq!(store.deliveries(date).unwrap(), outbox);
        assert_eq!(store.edition(date).unwrap().unwrap().papers, archive);
    }
    // The restored store is never opened by the engine it came from.
    let r = other
        .command(&["subscribers", "list"])
        .env("PAPERBOY_STORE__ENGINE", from.as_str())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(
        stderr.contains(&format!("holds a {to} store"))
            && stderr.contains(&format!("store.engine is \"{from}\""))
            && stderr.contains("paperboy backup")
            && stderr.contains("paperboy restore"),
        "{stderr}"
    );
    let r = other.run(&["restore", backup.to_str().unwrap()]);
    assert!(
        !r.ok() && r.stderr.contains("already holds data"),
        "{}",
        r.stderr
    );
    let before = sink.messages().len();
    let r = other.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.stdout.contains("2 already had it"), "{}", r.stdout);
    assert_eq!(
        sink.messages().len(),
        before + 1,
        "only the imported subscriber gets the edition"
    );
    // The unsubscribe link of a digest sent before the backup still works after it.
    let token = unsubscribe
        .trim_end_matches('>')
        .rsplit("token=")
        .next()
        .unwrap()
        .to_string();
    let restored = paperboy::parts::Parts::build(
        &paperboy::config::Settings::from_file(&other.config).unwrap(),
    )
    .unwrap();
    let id = restored
        .links
        .key()
        .verify(
            paperboy::tokens::Purpose::Unsubscribe,
            &token,
            chrono::Utc::now(),
            0,
        )
        .unwrap();
    assert_eq!(
        restored
            .store
            .subscriber_by_id(id)
            .unwrap()
            .unwrap()
            .email
            .as_str(),
        "ann@example.org"
    );
}

/// SIGTERM while the daemon is sending: it exits 0 soon, everything the sink accepted is
/// recorded as sent, and the next run sends exactly the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_send_records_what_went_and_the_next_run_sends_the_rest() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    // Each message takes a second at the server: the send is long enough to interrupt.
    let mut sink = SmtpSink::start_with(&["-w", "1"]);
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.set("web.listen", format!("127.0.0.1:{}", free_port()));
    app.set("schedule.cron", "0 0 8 1 1 * 2099");
    let subscribers = 40;
    app.seed(subscribers, |_| Default::default()).await;
    let mut daemon = KillOnDrop(app.command(&["serve"]).spawn().unwrap());
    let socket = app.dir.path().join("data/admin.sock");
    wait_until("the admin socket", || socket.exists());
    // Start an edition inside the daemon, then stop the daemon in the middle of it.
    let runner = app
        .command(&["run-once", "--date", "2025-12-09"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Not killed on drop: it ends on its own once the daemon it talks to is gone.
    // The edition is under way once the sink holds a message; forty at a second each, two
    // at a time, leave most of it to interrupt.
    sink.wait_for_first().await;
    let stopped_at = Instant::now();
    let status = daemon.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit 0 after SIGTERM: {status:?}");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(15),
        "stops well within TimeoutStopSec"
    );
    // The client that asked for the edition learns it did not finish: it does not exit 0.
    let out = runner.wait_with_output_bounded();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "runner: {:?}\n{}\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !out.status.success(),
        "the interrupted run-once exits non-zero: {stderr}"
    );

    let accepted = sink.messages();
    assert!(
        !accepted.is_empty() && accepted.len() < subscribers as usize,
        "{} accepted",
        accepted.len()
    );
    {
        let store = app.store();
        let date = paperboy::domain::EditionDate::parse("2025-12-09").unwrap();
        let sent = store
            .deliveries(date)
            .unwrap()
            .into_iter()
            .filter(|d| d.state == paperboy::store::DeliveryState::Sent)
            .count();
        assert_eq!(
            sent,
            accepted.len(),
            "every accepted message is recorded as sent"
        );
    }
    sink.restart_with(&[]);
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    let mut to = sink.recipients();
    let unique = to.len();
    to.dedup();
    assert_eq!(unique, to.len(), "nobody got two");
    assert_eq!(to.len(), subscribers as usize, "the rest went out");
}

/// A backup asked for while the daemon sends waits for the edition, then holds all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_during_a_send_restores_to_the_same_state() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    let sink = SmtpSink::start_with(&["-w", "1"]);
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.set("web.listen", format!("127.0.0.1:{}", free_port()));
    app.set("schedule.cron", "0 0 8 1 1 * 2099");
    app.seed(6, |_| Default::default()).await;
    let mut daemon = KillOnDrop(app.command(&["serve"]).spawn().unwrap());
    let socket = app.dir.path().join("data/admin.sock");
    wait_until("the admin socket", || socket.exists());
    let mut runner = KillOnDrop(
        app.command(&["run-once", "--date", "2025-12-09"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The edition is under way once the sink holds a message; the other five take about
    // two seconds more, in which the backup is asked for.
    sink.wait_for_first().await;
    let backup = app.dir.path().join("busy.backup");
    let r = app.run(&["backup", backup.to_str().unwrap()]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(runner.wait().unwrap().success());
    let listed = app.run(&["subscribers", "list", "--json"]).stdout;
    daemon.terminate(Duration::from_secs(20));

    let other = TestApp::new(&pages.url(), sink.port, "");
    assert!(other.run(&["restore", backup.to_str().unwrap()]).ok());
    assert_eq!(other.run(&["subscribers", "list", "--json"]).stdout, listed);
    let date = paperboy::domain::EditionDate::parse("2025-12-09").unwrap();
    let deliveries = other.store().deliveries(date).unwrap();
    assert_eq!(deliveries.len(), 6);
    assert!(
        deliveries
            .iter()
            .all(|d| d.state == paperboy::store::DeliveryState::Sent),
        "the backup waited for the edition in flight"
    );
    assert_eq!(sink.messages().len(), 6);
}

/// The admin socket is the service user's alone (mode 0600), and what is not a command is
/// refused without an answer, running nothing and leaving the daemon up: garbage, and the
/// commands no client may ask of a running daemon (`serve`, `restore`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_socket_is_private_and_refuses_what_is_not_a_command() {
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixStream;

    let app = TestApp::new("http://127.0.0.1:9/x", free_port(), "");
    app.set("web.listen", format!("127.0.0.1:{}", free_port()));
    app.set("schedule.cron", "0 0 8 1 1 * 2099");
    let backup = app.dir.path().join("backup.bin");
    assert!(app.run(&["backup", backup.to_str().unwrap()]).ok());
    let log = app.dir.path().join("serve.log");
    let mut daemon = KillOnDrop(
        app.command(&["serve"])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let socket = app.dir.path().join("data/admin.sock");
    wait_until("the admin socket", || socket.exists());
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "admin socket mode {mode:o}");

    let ask = |line: &str| {
        let mut stream = UnixStream::connect(&socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.write_all(line.as_bytes()).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    // A command as the CLI sends it is answered: the refusals below are not a format error.
    let preview = paperboy::commands::Command::Preview {
        email: "nobody@example.org".into(),
    };
    let line = serde_json::json!({ "command": preview, "input": null }).to_string() + "\n";
    let answer: serde_json::Value = serde_json::from_str(&ask(&line)).unwrap();
    assert_eq!(answer["code"], 1, "{answer}");
    assert!(
        answer["stderr"]
            .as_str()
            .unwrap()
            .contains("nobody@example.org"),
        "{answer}"
    );

    let restore = serde_json::json!({
        "command": { "Restore": { "file": backup } },
        "input": null,
    });
    for refused in [
        "not json at all\n".to_string(),
        "{\"command\":\"Serve\",\"input\":null}\n".to_string(),
        restore.to_string() + "\n",
    ] {
        assert_eq!(ask(&refused), "", "{refused} was answered");
    }
    let warnings = || {
        std::fs::read_to_string(&log)
            .unwrap()
            .matches("admin request failed")
            .count()
    };
    wait_until("three refusals in the log", || warnings() == 3);

    // Still serving, and nothing was run: the store was not restored over.
    let r = app.run(&["subscribers", "add", "ann@example.org"]);
    assert!(r.ok(), "{}", r.stderr);
    let r = app.run(&["subscribers", "list"]);
    assert!(r.stdout.contains("ann@example.org"), "{}", r.stdout);
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon is up");
}

/// What systemd and an operator's environment set reaches the real loading path: the store
/// goes to `$STATE_DIRECTORY`, the link key comes from `$CREDENTIALS_DIRECTORY`, and a
/// `PAPERBOY_SECTION__KEY` variable wins over the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_reaches_the_real_loading_path() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    let state = app.dir.path().join("state");
    let credentials = app.dir.path().join("credentials");
    std::fs::create_dir_all(&credentials).unwrap();
    let key: Vec<u8> = (0..32).map(|i| i * 7 + 1).collect();
    std::fs::write(credentials.join("secret-key"), &key).unwrap();
    let with_env = |args: &[&str]| {
        let out = app
            .command(args)
            .env("STATE_DIRECTORY", &state)
            .env("CREDENTIALS_DIRECTORY", &credentials)
            .env("PAPERBOY_DIGEST__MAX_ITEMS", "2")
            .output()
            .unwrap();
        crate::helpers::Run::from(out)
    };

    let r = with_env(&["subscribers", "add", "ann@example.org", "--confirmed"]);
    assert!(r.ok(), "{}", r.stderr);
    let r = with_env(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(
        r.stdout.contains(", 1 digest planned, 1 sent,"),
        "{}",
        r.stdout
    );
    assert!(
        !app.dir.path().join("data").exists(),
        "the configured data_dir was not used"
    );

    let digest = sink.wait_for(1).await.pop().unwrap();
    assert_eq!(digest.paper_ids().len(), 2, "the override of max_items");
    let store = paperboy::store::Store::open(&state, EngineKind::default()).unwrap();
    let ann = store
        .subscriber(&paperboy::domain::SubscriberEmail::parse("ann@example.org").unwrap())
        .unwrap()
        .expect("the subscriber is in $STATE_DIRECTORY's store");
    let links = paperboy::tokens::Links::new(
        paperboy::tokens::TokenKey::from_bytes(key).unwrap(),
        "https://papers.example.org",
    );
    let unsubscribe = digest.header("List-Unsubscribe").unwrap();
    assert!(
        unsubscribe.contains(&links.unsubscribe(ann.id)),
        "links are signed with the credential's key: {unsubscribe}"
    );
    drop(store);

    // The SMTP password is taken from the credential once a username is set.
    std::fs::write(credentials.join("smtp-password"), "from-the-credential").unwrap();
    let out = app
        .command(&["check-config"])
        .env("CREDENTIALS_DIRECTORY", &credentials)
        .env("PAPERBOY_MAIL__SMTP__USERNAME", "pb")
        .output()
        .unwrap();
    let r = crate::helpers::Run::from(out);
    assert!(r.ok(), "{}", r.stderr);
    let from = format!("(from {})", credentials.join("smtp-password").display());
    assert!(r.stdout.contains(&from), "{}", r.stdout);
    // It says where the settings came from, the environment included, and where the
    // paths left to their defaults lead.
    let first = r.stdout.lines().next().unwrap();
    assert!(
        first.contains(
            "with PAPERBOY_MAIL__SMTP__USERNAME, CREDENTIALS_DIRECTORY from the environment"
        ),
        "{first}"
    );
    let data = app.dir.path().join("data");
    for line in [
        format!("outbox_dir = \"{}\"", data.join("outbox").display()),
        format!(
            "secret_file = \"{}\"",
            credentials.join("secret-key").display()
        ),
    ] {
        assert!(r.stdout.contains(&line), "{line}: {}", r.stdout);
    }
    assert!(r.stdout.contains("username = \"pb\""), "{}", r.stdout);
    assert!(!r.stdout.contains("from-the-credential"));
}

/// Started from a shell with umask 022, paperboy still keeps its files to itself: the data
/// directory (even one created open by someone else), the store, the key, the outbox and
/// every message in it are its owner's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    let app = TestApp::new(&pages.url(), free_port(), "");
    app.set("mail.transport", "file");
    let data = app.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |args: &[&str]| {
        let mut cmd = app.command(args);
        // SAFETY: umask(2) is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
                Ok(())
            });
        }
        let r = crate::helpers::Run::from(cmd.output().unwrap());
        assert!(r.ok(), "{args:?}: {}", r.stderr);
    };
    run(&["subscribers", "add", "ann@example.org", "--confirmed"]);
    run(&["run-once", "--date", "2025-12-09"]);

    let mut seen = Vec::new();
    let mut todo = vec![data.clone()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", path.display());
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
        seen.push(path);
    }
    let names: Vec<_> = seen.iter().map(|p| p.display().to_string()).collect();
    for expected in ["secret.key", "outbox/", ".eml", "paperboy.lock"] {
        assert!(
            names.iter().any(|n| n.contains(expected)),
            "{expected} was looked at: {names:?}"
        );
    }
}
