//! The command line as operators use it: config errors, subscribers, preview, dry runs.

use crate::helpers::{EngineKind, PageServer, Reply, SmtpSink, TestApp, fixture};

/// The CLI refuses what the form refuses: an address no digest could reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_addresses_that_cannot_be_mailed() {
    let app = TestApp::new("http://127.0.0.1:9/x", 25, "");
    for (address, says) in [
        ("ann@[192.0.2.1]", "at an IP address"),
        ("\"ann\"@example.org", "quoted addresses"),
        ("a\u{202E}nn@example.org", "invisible characters"),
    ] {
        let r = app.run(&["subscribers", "add", address]);
        assert_eq!(r.code, Some(1), "{address:?}: {}", r.stdout);
        assert!(r.stderr.contains(says), "{address:?}: {}", r.stderr);
    }
    let r = app.run(&["subscribers", "add", "bob@Bücher.example", "--confirmed"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(
        r.stdout.contains("bob@xn--bcher-kva.example"),
        "{}",
        r.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_names_the_bad_key_and_masks_secrets() {
    let app = TestApp::new("http://127.0.0.1:9/x", 25, "");
    let r = app
        .command(&["check-config"])
        .env("PAPERBOY_SMTP_PASSWORD", "hunter2-secret")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    // A password without a username is a config error that names the key.
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("mail.smtp.username"));
    assert!(!out.contains("hunter2"));

    let mut text = std::fs::read_to_string(&app.config).unwrap();
    text = text.replace("concurrency = 2", "concurrency = 2\nusername = \"pb\"");
    std::fs::write(&app.config, &text).unwrap();
    let r = app
        .command(&["check-config"])
        .env("PAPERBOY_SMTP_PASSWORD", "hunter2-secret")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(
        !out.contains("hunter2") && out.contains("********"),
        "{out}"
    );
    assert!(out.contains("max_items = 30"));

    std::fs::write(
        &app.config,
        text.replace("[digest]", "[digest]\nmax_itmes = 3"),
    )
    .unwrap();
    let r = app.run(&["check-config"]);
    assert!(!r.ok());
    assert!(r.stderr.contains("max_itmes"), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);

    std::fs::write(&app.config, &text).unwrap();
    app.set("schedule.timezone", "Mars/Olympus");
    let r = app.run(&["check-config"]);
    assert!(!r.ok());
    assert!(r.stderr.contains("schedule.timezone"), "{}", r.stderr);

    let r = app
        .command(&["check-config"])
        .arg("--config")
        .arg(app.dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert!(!r.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriber_commands_change_nothing() {
    let app = TestApp::new("http://127.0.0.1:9/x", 25, "");
    app.add(
        "ann@example.org",
        &[
            "--confirmed",
            "--keywords",
            "LLM, diffusion",
            "--max-items",
            "5",
        ],
    );
    for (args, needle) in [
        (
            vec!["subscribers", "add", "not-an-address"],
            "not a valid email address",
        ),
        (
            vec!["subscribers", "add", "ANN@example.org"],
            "already a subscriber",
        ),
        (
            vec!["subscribers", "add", "x@example.org", "--max-items", "0"],
            "papers per digest",
        ),
        (
            vec!["subscribers", "remove", "nobody@example.org"],
            "not a subscriber",
        ),
        (vec!["preview", "nobody@example.org"], "not a subscriber"),
        (vec!["run-once", "--date", "2025-13-01"], "YYYY-MM-DD"),
    ] {
        let r = app.run(&args);
        assert!(!r.ok(), "{args:?} succeeded");
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    }
    let r = app.run(&["subscribers", "list", "--json"]);
    assert!(r.ok());
    let rows: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["email"], "ann@example.org");
    assert_eq!(rows[0]["status"], "active");
    assert_eq!(rows[0]["keywords"], serde_json::json!(["llm", "diffusion"]));
    assert_eq!(rows[0]["max_items"], 5);

    let r = app.run(&["subscribers", "remove", "Ann@Example.org"]);
    assert!(r.ok(), "{}", r.stderr);
    let r = app.run(&["subscribers", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rows[0]["status"], "unsubscribed");
    let r = app.run(&["subscribers", "remove", "--forget", "ann@example.org"]);
    assert!(r.ok(), "{}", r.stderr);
    let r = app.run(&["subscribers", "list"]);
    assert!(r.stdout.contains("no subscribers"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_and_dry_run_send_and_record_nothing() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.add("ann@example.org", &["--confirmed", "--max-items", "5"]);

    let r = app.run(&["preview", "ann@example.org"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.stdout.starts_with("TRENDING PAPERS"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("1. Inference Scaling for Long-Context Retrieval Augmented Generation")
    );
    assert!(
        r.stdout
            .contains("https://papers.example.org/unsubscribe?token=")
    );

    let r = app.run(&["run-once", "--date", "2025-12-09", "--dry-run"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(
        r.stdout.contains("ann@example.org: would get 5 paper(s)"),
        "{}",
        r.stdout
    );
    assert!(sink.messages().is_empty());

    // Nothing was recorded: the real run sends the full digest.
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(sink.messages()[0].paper_ids().len(), 5);
    let r = app.run(&["run-once", "--date", "2025-12-09", "--dry-run"]);
    assert!(
        r.stdout.contains("already has this edition"),
        "{}",
        r.stdout
    );
}

/// The README's first command: no SMTP server, mail lands as .eml files in ./data/outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_transport_writes_the_outbox() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-08.html"))).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("paperboy.toml"),
        format!("[source]\nurl = \"{}\"\n", pages.url()),
    )
    .unwrap();
    let run = |args: &[&str]| {
        crate::helpers::paperboy_command()
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    assert!(
        run(&["subscribers", "add", "ann@example.org", "--confirmed"])
            .status
            .success()
    );
    let out = run(&["run-once", "--date", "2025-12-08"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outbox = dir.path().join("data/outbox");
    let files: Vec<_> = std::fs::read_dir(&outbox).unwrap().collect();
    assert_eq!(files.len(), 1);
    let eml = std::fs::read(files[0].as_ref().unwrap().path()).unwrap();
    let parsed = mailparse::parse_mail(&eml).unwrap();
    assert_eq!(parsed.ctype.mimetype, "multipart/alternative");
    assert!(dir.path().join("data/secret.key").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_data_dir_is_refused() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    let sink = SmtpSink::start_with(&["-w", "2"]);
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.add("ann@example.org", &["--confirmed"]);
    let mut first = app
        .command(&["run-once", "--date", "2025-12-09"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until the first run holds the store's lock; it then waits on the
    // slow sink for two seconds.
    let lock = app.dir.path().join("data/paperboy.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !crate::helpers::is_locked(&lock) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never took the store"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(!second.ok());
    assert!(
        second.stderr.contains("in use by another paperboy process"),
        "{}",
        second.stderr
    );
    assert!(first.wait().unwrap().success());
    assert_eq!(sink.messages().len(), 1);
}

/// `store compact` rewrites a sled store keeping everything in it: the next run of
/// the same edition sends nothing again, the next edition only what is new. SQLite has
/// nothing to compact, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_compact_keeps_everything() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-08.html"))).await;
    let sink = SmtpSink::start();
    let app = TestApp::on(EngineKind::Sled, &pages.url(), sink.port, "");
    app.seed(40, |_| Default::default()).await;
    assert!(app.run(&["run-once", "--date", "2025-12-08"]).ok());
    let listed = app.run(&["subscribers", "list", "--json"]).stdout;
    let sled = app.dir.path().join("data/sled");
    let r = app.run(&["store", "compact"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.stdout.starts_with("store compacted: "), "{}", r.stdout);
    let names: Vec<String> = std::fs::read_dir(app.dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        sled.is_dir() && !names.iter().any(|n| n.starts_with("sled.")),
        "{names:?}"
    );
    assert_eq!(app.run(&["subscribers", "list", "--json"]).stdout, listed);
    let before = sink.messages().len();
    assert_eq!(before, 40);
    let r = app.run(&["run-once", "--date", "2025-12-08"]);
    assert!(
        r.ok() && r.stdout.contains("40 already had it"),
        "{}",
        r.stdout
    );
    pages.serve_fixture("trending-2025-12-09.html");
    assert!(app.run(&["run-once", "--date", "2025-12-09"]).ok());
    let mut seen: std::collections::HashMap<String, Vec<String>> = Default::default();
    for m in sink.messages() {
        seen.entry(m.recipients[0].clone())
            .or_default()
            .extend(m.paper_ids());
    }
    assert!(sink.messages().len() > before, "the next edition went out");
    for (to, papers) in &seen {
        let unique: std::collections::HashSet<&String> = papers.iter().collect();
        assert_eq!(unique.len(), papers.len(), "{to} got a paper twice");
    }

    let other = TestApp::on(EngineKind::Sqlite, &pages.url(), sink.port, "");
    other.seed(1, |_| Default::default()).await;
    let r = other.run(&["store", "compact"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(
        r.stdout.starts_with("nothing to compact: the sqlite store"),
        "{}",
        r.stdout
    );
}

/// The environment a developer or a service manager may have exported, pointing elsewhere:
/// another data directory (twice), secrets, the journal, other settings.
fn polluting_env(elsewhere: &std::path::Path) -> Vec<(&'static str, std::path::PathBuf)> {
    vec![
        ("PAPERBOY_DATA_DIR", elsewhere.join("data")),
        ("STATE_DIRECTORY", elsewhere.join("state")),
        ("CREDENTIALS_DIRECTORY", elsewhere.join("credentials")),
        ("JOURNAL_STREAM", "8:4242".into()),
        ("PAPERBOY_LOG_FORMAT", "json".into()),
        ("PAPERBOY_DIGEST__MAX_ITEMS", "7".into()),
        ("PAPERBOY_CONFIG", elsewhere.join("other.toml")),
    ]
}

/// Tests run the binary in a clean environment: whatever `PAPERBOY_*` or systemd variables
/// the test process has, the binary sees only the test's own config. The check runs in a
/// copy of this test binary started with those variables exported (see
/// [`exported_variables_probe`]); a test process cannot safely set its own environment.
#[test]
fn exported_variables_do_not_reach_the_binary() {
    let elsewhere = tempfile::tempdir().unwrap();
    let credentials = elsewhere.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::write(credentials.join("secret-key"), "k".repeat(64)).unwrap();
    let env = polluting_env(elsewhere.path());

    // The variables do reach a binary started without the helper's cleaning: the check
    // below would notice if they leaked.
    let app = TestApp::new("http://127.0.0.1:9/x", 25, "");
    let raw = std::process::Command::new(env!("CARGO_BIN_EXE_paperboy"))
        .arg("--config")
        .arg(&app.config)
        .arg("check-config")
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    let seen = format!(
        "{}{}",
        String::from_utf8_lossy(&raw.stdout),
        String::from_utf8_lossy(&raw.stderr)
    );
    assert!(
        raw.status.success() && seen.contains(&*elsewhere.path().join("state").to_string_lossy()),
        "an uncleaned binary sees the variables: {seen}"
    );

    let probe = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cli::exported_variables_probe",
            "--ignored",
            "--test-threads=1",
        ])
        .envs(env.iter().cloned())
        .env("PROBE_ELSEWHERE_DIR", elsewhere.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success() && out.contains("1 passed"),
        "the probe, with the variables exported:\n{out}\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
}

/// Run by [`exported_variables_do_not_reach_the_binary`] with the variables exported; on
/// its own, it checks the same in whatever environment it finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by exported_variables_do_not_reach_the_binary, with its environment"]
async fn exported_variables_probe() {
    let app = TestApp::new("http://127.0.0.1:9/x", 25, "");
    let r = app.run(&["check-config"]);
    assert!(r.ok(), "{}", r.stderr);
    let data = app.dir.path().join("data");
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("data_dir") && l.contains(&*data.to_string_lossy())),
        "the test's data_dir: {}",
        r.stdout
    );
    assert!(r.stdout.contains("max_items = 30"), "{}", r.stdout);
    if let Some(elsewhere) = std::env::var_os("PROBE_ELSEWHERE_DIR") {
        let elsewhere = elsewhere.to_string_lossy().into_owned();
        assert!(!r.stdout.contains(&elsewhere), "{}", r.stdout);
        assert!(!r.stderr.contains(&elsewhere), "{}", r.stderr);
    }
    // Under journald the logs would be JSON lines.
    assert!(!r.stderr.trim_start().starts_with('{'), "{}", r.stderr);
    // And the store is where the test put it.
    app.add("ann@example.org", &["--confirmed"]);
    assert_eq!(app.store().subscribers().unwrap().len(), 1);
}

/// A backup holds the link-signing key: written over a file anyone could read, it is left
/// readable by its owner only, and holds the new backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_over_a_readable_file_is_left_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::new("http://127.0.0.1:9/x", 25, "");
    app.add("ann@example.org", &["--confirmed"]);
    let backup = app.dir.path().join("old.backup");
    std::fs::write(&backup, "an older file, readable by all").unwrap();
    std::fs::set_permissions(&backup, std::fs::Permissions::from_mode(0o644)).unwrap();

    let r = app.run(&["backup", backup.to_str().unwrap()]);
    assert!(r.ok(), "{}", r.stderr);
    let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the backup is the owner's only");

    // It is the new backup, whole: it restores.
    let other = TestApp::new("http://127.0.0.1:9/x", 25, "");
    let r = other.run(&["restore", backup.to_str().unwrap()]);
    assert!(r.ok(), "{}", r.stderr);
    let list = other.run(&["subscribers", "list", "--json"]);
    assert!(list.stdout.contains("ann@example.org"), "{}", list.stdout);
}

/// The commands that do something, as their full names ("paperboy subscribers add"), with
/// the long options of each that the command itself defines (not --config or --help).
fn commands_and_options() -> Vec<(String, Vec<String>)> {
    fn walk(cmd: &clap::Command, path: &str, found: &mut Vec<(String, Vec<String>)>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!("{path} {}", sub.get_name());
            if sub.has_subcommands() {
                walk(sub, &name, found);
            } else {
                let options = sub
                    .get_arguments()
                    .filter(|a| !a.is_hide_set() && !a.is_global_set())
                    .filter_map(|a| a.get_long())
                    .filter(|long| *long != "help")
                    .map(|long| format!("--{long}"))
                    .collect();
                found.push((name, options));
            }
        }
    }
    use clap::CommandFactory;
    let mut found = Vec::new();
    walk(&paperboy::cli::Cli::command(), "paperboy", &mut found);
    found
}

/// paperboy(1), as the package ships it: every command under a heading of its own, with
/// every one of its options; made without a config file (a config that cannot be read
/// does not stop it).
#[test]
fn the_manual_page_describes_every_command_and_option() {
    let out = crate::helpers::paperboy_command()
        .args(["--config", "/nonexistent/paperboy.toml", "man"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Roff as text: options are written \fB\-\-name\fR.
    let page = String::from_utf8(out.stdout)
        .unwrap()
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "");
    assert!(page.contains("\n.TH paperboy 1 "), "{page}");
    let (top, commands) = page
        .split_once("\n.SH COMMANDS")
        .expect("a COMMANDS section");
    assert!(top.contains("--config"), "{top}");
    let sections: Vec<&str> = commands.split("\n.SS ").collect();
    let listed = commands_and_options();
    assert!(listed.len() >= 12, "{listed:?}");
    for (name, options) in listed {
        let heading = format!("\"{name}\"\n");
        let section = sections
            .iter()
            .find(|s| s.starts_with(&heading))
            .unwrap_or_else(|| panic!("no section for {name} in\n{commands}"));
        // Described, not only in the synopsis: an entry of its own (.TP) in the options.
        for option in options {
            assert!(
                section.contains(&format!("\n.TP\n{option}")),
                "{name}: no {option} in\n{section}"
            );
        }
    }
}

/// `paperboy completions SHELL` prints a script that completes commands and options: bash's
/// is run as bash runs it on Tab; zsh's and fish's name every command.
#[test]
fn completions_complete_commands_and_options() {
    let script = |shell: &str| {
        let out = crate::helpers::paperboy_command()
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {:?}", out);
        String::from_utf8(out.stdout).unwrap()
    };
    // What bash offers for the words typed so far (the last one is being completed).
    let bash = script("bash");
    let offered = |words: &[&str]| -> Vec<String> {
        let out = std::process::Command::new("bash")
            .args([
                "-c",
                r#"eval "$BASH_COMPLETION_SCRIPT"
                   COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
                   _paperboy paperboy "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
                   printf '%s\n' "${COMPREPLY[@]}""#,
                "bash",
            ])
            .args(words)
            .env("BASH_COMPLETION_SCRIPT", &bash)
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}", out);
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(offered(&["paperboy", "subscr"]), ["subscribers"]);
    assert_eq!(offered(&["paperboy", "subscribers", "ex"]), ["export"]);
    let options = offered(&["paperboy", "subscribers", "add", "--m"]);
    assert!(
        options.contains(&"--min-upvotes".to_owned())
            && options.contains(&"--max-items".to_owned()),
        "{options:?}"
    );
    let everything = offered(&["paperboy", ""]);
    let (zsh, fish) = (script("zsh"), script("fish"));
    for (name, _) in commands_and_options() {
        let first = name.split(' ').nth(1).unwrap();
        assert!(
            everything.iter().any(|w| w == first),
            "bash offers no {first}"
        );
        let last = name.rsplit(' ').next().unwrap();
        assert!(zsh.contains(last) && fish.contains(last), "{name}");
    }
}
