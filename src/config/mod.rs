//! Settings: loaded from one TOML file, validated once, then trusted everywhere.
//!
//! The file is found at `--config`, else `$PAPERBOY_CONFIG`, else `./paperboy.toml`, else the
//! built-in defaults are used, which give a working first run (mail goes to files in
//! `./data/outbox`). Unknown keys are errors: a typo must not silently fall back to a default.

mod digest;
mod mail;
mod schedule;
mod secret;
mod source;
mod web;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use digest::DigestSettings;
pub use mail::{BounceAddress, DkimSettings, MailSettings, Sender, SmtpSettings, Tls, Transport};
pub use schedule::{Cron, ScheduleSettings, TimeZone};
pub use secret::Secret;
pub use source::{AlsoSource, MAX_RECENT_DAYS, SourceKind, SourceSettings, UrlTemplate};
pub use web::WebSettings;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("config file {path}: {reason}")]
    Syntax { path: PathBuf, reason: String },
    #[error("settings from the environment: {0}")]
    Environment(String),
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    /// The value of `key` cannot be used, for `reason`.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::invalid(key, reason)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where the store, the outbox and the signing key live. `$STATE_DIRECTORY` wins.
    pub data_dir: PathBuf,
    /// The base of every link in an email; must be reachable by readers.
    pub public_url: PublicUrl,
    /// A file holding the key that signs unsubscribe and preferences links (at least 32
    /// bytes). Without one, a key is created in `data_dir` on first start and kept.
    pub secret_file: Option<PathBuf>,
    pub source: SourceSettings,
    pub schedule: ScheduleSettings,
    pub digest: DigestSettings,
    pub mail: MailSettings,
    pub web: WebSettings,
    pub store: StoreSettings,
}

/// `[store]`: which engine keeps the store in `data_dir`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `"sled"` (the default, in `data_dir/sled/`) or `"sqlite"` (`data_dir/paperboy.sqlite`).
    pub engine: crate::store::EngineKind,
}

/// Variables with the prefix that are not key overrides.
const RESERVED_ENV: &[&str] = &[
    "PAPERBOY_CONFIG",
    "PAPERBOY_SMTP_PASSWORD",
    "PAPERBOY_LOG_FORMAT",
];

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The settings a table holds, each value parsed into its type; toml's error names the key
/// whose value would not parse ("… in `schedule.cron`").
fn typed(table: toml::Table) -> Result<Settings, String> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| one_line(&e.to_string()))
}

/// The public URL readers reach paperboy at: http(s), with a host, no query or fragment.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicUrl(String);

impl PublicUrl {
    /// Without a trailing slash, ready for `format!("{base}/unsubscribe")`.
    pub fn base(&self) -> &str {
        self.0.trim_end_matches('/')
    }
}

impl TryFrom<String> for PublicUrl {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let url = url::Url::parse(&text).map_err(|e| format!("'{text}' is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("'{text}' must be an http:// or https:// address"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("'{text}' must not have a query or fragment"));
        }
        Ok(Self(text))
    }
}

impl From<PublicUrl> for String {
    fn from(u: PublicUrl) -> Self {
        u.0
    }
}

/// toml's messages span several lines with a source excerpt; keep them on one.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn lookup<'a>(table: &'a toml::Table, path: &[String]) -> Option<&'a toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for p in parents {
        t = t.get(p)?.as_table()?;
    }
    t.get(last)
}

fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty name")?;
    let mut t = table;
    for p in parents {
        t = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` is not a section"))?;
    }
    t.insert(last.clone(), value);
    Ok(())
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            public_url: PublicUrl::try_from("http://127.0.0.1:8080".to_string())
                .expect("the default public URL parses"),
            secret_file: None,
            source: SourceSettings::default(),
            schedule: ScheduleSettings::default(),
            digest: DigestSettings::default(),
            mail: MailSettings::default(),
            web: WebSettings::default(),
            store: StoreSettings::default(),
        }
    }
}

/// Where the settings came from, for `check-config` and the startup log.
#[derive(Clone, Debug)]
pub enum Origin {
    File(PathBuf),
    Defaults,
}

/// Where the settings came from, and the environment variables laid over them.
#[derive(Clone, Debug)]
pub struct Sources {
    pub origin: Origin,
    /// `PAPERBOY_*` key overrides, and `STATE_DIRECTORY` / `CREDENTIALS_DIRECTORY` where
    /// they were used, by name.
    pub environment: Vec<String>,
}

impl std::fmt::Display for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.origin {
            Origin::File(p) => write!(f, "{}", p.display())?,
            Origin::Defaults => f.write_str("built-in defaults (no config file found)")?,
        }
        if !self.environment.is_empty() {
            write!(
                f,
                ", with {} from the environment",
                self.environment.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Whether an environment variable overrides a key (`PAPERBOY_SECTION__KEY`).
fn is_override(name: &str) -> bool {
    name.strip_prefix("PAPERBOY_")
        .is_some_and(|rest| !rest.is_empty() && !RESERVED_ENV.contains(&name))
}

impl Settings {
    /// Finds, reads and validates the settings, reading secrets from the environment and
    /// the files the settings name.
    pub fn load(explicit: Option<&Path>) -> Result<(Self, Sources), ConfigError> {
        let (mut settings, sources) = Self::load_without_secrets(explicit)?;
        settings.load_secrets()?;
        Ok((settings, sources))
    }

    /// The SMTP password and the DKIM key, from the files the settings name (or the
    /// environment). What only sending mail needs: `paperboy bounce`, run by a mail server
    /// as a user that cannot read them, hands its report to the daemon without them.
    pub fn load_secrets(&mut self) -> Result<(), ConfigError> {
        self.load_password()?;
        self.load_dkim_key()?;
        self.validate()
    }

    /// [`Settings::load`] but for the secret files, which are left unread.
    pub fn load_without_secrets(explicit: Option<&Path>) -> Result<(Self, Sources), ConfigError> {
        let env_path = std::env::var_os("PAPERBOY_CONFIG").map(PathBuf::from);
        let path = explicit.map(Path::to_path_buf).or(env_path);
        let (text, origin) = match path {
            // A path that was asked for must exist; only the implicit ./paperboy.toml may not.
            Some(p) => (read(&p)?, Origin::File(p)),
            None if Path::new("paperboy.toml").exists() => {
                let p = PathBuf::from("paperboy.toml");
                (read(&p)?, Origin::File(p))
            }
            None => (String::new(), Origin::Defaults),
        };
        let syntax = |reason| match &origin {
            Origin::File(p) => ConfigError::Syntax {
                path: p.clone(),
                reason,
            },
            Origin::Defaults => ConfigError::Environment(reason),
        };
        let mut settings = Self::from_toml_with_env(&text, std::env::vars()).map_err(syntax)?;
        let mut environment: Vec<String> = std::env::vars()
            .map(|(name, _)| name)
            .filter(|name| is_override(name))
            .collect();
        environment.sort();
        if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
            environment.push("STATE_DIRECTORY".into());
            // systemd may pass several, colon-separated; the first is ours.
            let first = dir
                .to_string_lossy()
                .split(':')
                .next()
                .unwrap_or("")
                .to_string();
            settings.data_dir = PathBuf::from(first);
        }
        // systemd's LoadCredential= puts secrets in $CREDENTIALS_DIRECTORY; a file named
        // there is used when the config names none.
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from) {
            environment.push("CREDENTIALS_DIRECTORY".into());
            settings.use_credentials(&dir);
        }
        settings.validate()?;
        Ok((
            settings,
            Sources {
                origin,
                environment,
            },
        ))
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::from_toml(&read(path)?).map_err(|reason| ConfigError::Syntax {
            path: path.to_path_buf(),
            reason,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| one_line(&e.to_string()))?;
        typed(table)
    }

    /// The file's settings with `PAPERBOY_SECTION__KEY=value` variables laid over them:
    /// `__` separates the levels (`PAPERBOY_MAIL__SMTP__PORT` is `mail.smtp.port`), names
    /// are lower-cased, and a value takes the type of the key it replaces (number, boolean,
    /// or text). An override of a key that does not exist is an error, like a typo in the file.
    pub fn from_toml_with_env(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, String> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| one_line(&e.to_string()))?;
        let defaults = toml::Table::try_from(Self::default()).expect("defaults serialise");
        let mut applied = Vec::new();
        for (name, value) in vars {
            if !is_override(&name) {
                continue;
            }
            let rest = &name["PAPERBOY_".len()..];
            let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            let like = lookup(&table, &path)
                .or_else(|| lookup(&defaults, &path))
                .cloned();
            let typed = match like {
                Some(toml::Value::Integer(_)) => value
                    .trim()
                    .parse::<i64>()
                    .map(toml::Value::Integer)
                    .map_err(|_| format!("{name}: '{value}' is not a whole number"))?,
                Some(toml::Value::Boolean(_)) => value
                    .trim()
                    .parse::<bool>()
                    .map(toml::Value::Boolean)
                    .map_err(|_| format!("{name}: '{value}' is not true or false"))?,
                Some(toml::Value::Table(_)) => {
                    return Err(format!("{name}: names a section, not a key"));
                }
                _ => toml::Value::String(value),
            };
            insert(&mut table, &path, typed).map_err(|e| format!("{name}: {e}"))?;
            applied.push(name);
        }
        typed(table).map_err(|msg| {
            if applied.is_empty() {
                msg
            } else {
                format!("{msg} (with overrides from {})", applied.join(", "))
            }
        })
    }

    /// `smtp-password` and `secret-key` in a credentials directory, when the config names
    /// no file of its own.
    pub fn use_credentials(&mut self, dir: &Path) {
        // An empty file is an unset credential (systemd's empty SetCredential= fallback).
        let found = |name: &str| {
            Some(dir.join(name)).filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        };
        if self.mail.smtp.password_file.is_none() {
            self.mail.smtp.password_file = found("smtp-password");
        }
        if self.secret_file.is_none() {
            self.secret_file = found("secret-key");
        }
        if let Some(dkim) = &mut self.mail.dkim
            && dkim.key_file.is_none()
        {
            dkim.key_file = found("dkim-key");
        }
    }

    /// Reads the DKIM key named by `mail.dkim.key_file`, when signing is configured.
    pub fn load_dkim_key(&mut self) -> Result<(), ConfigError> {
        if let Some(dkim) = &mut self.mail.dkim
            && let Some(file) = &dkim.key_file
        {
            let pem = std::fs::read_to_string(file).map_err(|e| {
                invalid(
                    "mail.dkim.key_file",
                    format!("cannot read {}: {e}", file.display()),
                )
            })?;
            dkim.key = Some(Secret(pem));
        }
        Ok(())
    }

    fn load_password(&mut self) -> Result<(), ConfigError> {
        let smtp = &mut self.mail.smtp;
        if let Some(file) = &smtp.password_file {
            let raw = std::fs::read_to_string(file).map_err(|e| {
                invalid(
                    "mail.smtp.password_file",
                    format!("cannot read {}: {e}", file.display()),
                )
            })?;
            smtp.password = Some(Secret(raw.trim_end_matches(['\r', '\n']).to_string()));
        } else if let Ok(p) = std::env::var("PAPERBOY_SMTP_PASSWORD")
            && !p.is_empty()
        {
            smtp.password = Some(Secret(p));
        }
        Ok(())
    }

    /// The checks a value's type cannot make alone (ranges, and rules across keys), section
    /// by section; every error names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        self.source.check()?;
        self.schedule.check()?;
        self.digest.check()?;
        self.mail.check()?;
        self.web.check()
    }

    /// The public URL without a trailing slash, ready for `format!("{base}/unsubscribe")`.
    pub fn public_base(&self) -> &str {
        self.public_url.base()
    }

    /// Where the link-signing key is: `secret_file`, else `data_dir/secret.key`.
    pub fn secret_key_path(&self) -> PathBuf {
        self.secret_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("secret.key"))
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.mail
            .outbox_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("outbox"))
    }

    /// The effective settings as TOML, with secrets masked: what `check-config` prints.
    pub fn to_masked_toml(&self) -> String {
        // Paths left to their defaults are shown as they resolve: an operator looking for
        // the outbox or the key should not have to know the rule.
        let mut shown = Self {
            source: self.source.resolved(),
            secret_file: Some(self.secret_key_path()),
            ..self.clone()
        };
        shown.mail.outbox_dir = Some(self.outbox_dir());
        let mut out = toml::to_string_pretty(&shown).expect("settings serialise");
        let password = match (&self.mail.smtp.password, &self.mail.smtp.password_file) {
            (None, _) => "not set".to_string(),
            (Some(_), Some(f)) => format!("******** (from {})", f.display()),
            (Some(_), None) => "******** (from $PAPERBOY_SMTP_PASSWORD)".to_string(),
        };
        out.push_str(&format!("\n# mail.smtp password: {password}\n"));
        if let Some(dkim) = &self.mail.dkim {
            let from = dkim.key_file.as_ref().map_or("not set".to_string(), |f| {
                format!("******** (from {})", f.display())
            });
            out.push_str(&format!("# mail.dkim key: {from}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().unwrap();
    }

    #[test]
    fn the_documented_example_parses_and_is_valid() {
        let path = format!("{}/config/paperboy.toml", env!("CARGO_MANIFEST_DIR"));
        let s = Settings::from_file(Path::new(&path)).unwrap();
        s.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = Settings::from_toml("[digest]\nmax_itmes = 3\n").unwrap_err();
        assert!(e.contains("max_itmes"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("[schedule]\ncron = \"every morning\"", "schedule.cron"),
            (
                "[schedule]\ntimezone = \"Mars/Olympus\"",
                "schedule.timezone",
            ),
            ("public_url = \"ftp://x.org\"", "public_url"),
            ("[mail]\nfrom = \"not a mailbox\"", "mail.from"),
            (
                "[mail]\nbounce_address = \"Bounces <b@x.org>\"",
                "mail.bounce_address",
            ),
            (
                "[mail]\nbounce_address = \"b+x@x.org\"",
                "mail.bounce_address",
            ),
            (
                "[mail]\nbounce_transient_count = 0",
                "mail.bounce_transient_count",
            ),
            (
                "[mail]\nbounce_socket = \"run/bounce.sock\"",
                "mail.bounce_socket",
            ),
            (
                "[mail]\nbounce_transient_days = 0",
                "mail.bounce_transient_days",
            ),
            ("[mail.smtp]\nconcurrency = 0", "mail.smtp.concurrency"),
            ("[digest]\nmax_items = 0", "digest.max_items"),
            ("[digest]\nretention_days = 7", "digest.retention_days"),
            ("[web]\nlisten = \"localhost\"", "web.listen"),
            ("[source]\nurl = \"file:///etc/passwd\"", "source.url"),
            ("[source]\nrecent_days = 15", "source.recent_days"),
            (
                "[source]\nrecent_url = \"https://x.org/papers/today\"",
                "source.recent_url",
            ),
            (
                "[source.also.api]\nkind = \"hf-api\"\nurl = \"nope\"",
                "source.also.api.url",
            ),
            (
                "[source.also.\"The API\"]\nkind = \"hf-api\"",
                "source.also.The API",
            ),
        ];
        for (toml, key) in cases {
            let e = match Settings::from_toml(toml) {
                // Values that do not parse are refused as the file is read...
                Err(e) => e,
                // ...those of the right type but out of range, by the checks after.
                Ok(s) => s.validate().unwrap_err().to_string(),
            };
            assert!(e.contains(key), "{toml}: {e}");
            assert_eq!(e.matches(key).count(), 1, "the key once: {e}");
        }
        let e = Settings::from_toml("[mail]\ntransport = \"pigeon\"").unwrap_err();
        assert!(e.contains("pigeon") || e.contains("transport"), "{e}");
    }

    #[test]
    fn source_urls_follow_the_kind_unless_set() {
        let s = Settings::default();
        assert_eq!(s.source.url(), "https://huggingface.co/papers/trending");
        assert_eq!(
            s.source.recent_url(),
            "https://huggingface.co/papers/date/{date}"
        );
        let mut mirror = Settings::default();
        mirror.source.url = Some(
            UrlTemplate::try_from("http://127.0.0.1:8000/papers/trending".to_string()).unwrap(),
        );
        assert_eq!(
            mirror.source.recent_url(),
            "http://127.0.0.1:8000/papers/date/{date}"
        );
        let s = Settings::from_toml(
            "[source]\nkind = \"hf-api\"\n[source.also.page]\n[source.also.day]\nurl = \"https://x.org/d/{date}\"\n",
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.source.url(), "https://huggingface.co/api/daily_papers");
        assert_eq!(
            s.source.recent_url(),
            "https://huggingface.co/api/daily_papers?date={date}"
        );
        assert_eq!(s.source.also["page"].kind, SourceKind::HfPage);
        assert_eq!(
            s.source.also["page"].url(),
            "https://huggingface.co/papers/trending"
        );
        // check-config shows the URLs in effect, not blanks.
        let shown = s.to_masked_toml();
        assert!(
            shown.contains("url = \"https://huggingface.co/api/daily_papers\""),
            "{shown}"
        );
        assert!(shown.contains("[source.also.page]"), "{shown}");
        let e = Settings::from_toml("[source]\nkind = \"rss\"").unwrap_err();
        assert!(e.contains("rss"), "{e}");
    }

    #[test]
    fn more_sources_can_come_from_the_environment() {
        let vars = [
            ("PAPERBOY_SOURCE__ALSO__API__KIND", "hf-api"),
            ("PAPERBOY_SOURCE__RECENT_DAYS", "0"),
            ("PAPERBOY_SOURCE__URL", "https://x.org/papers/date/{date}"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let s = Settings::from_toml_with_env("", vars).unwrap();
        s.validate().unwrap();
        assert_eq!(s.source.also["api"].kind, SourceKind::HfApi);
        assert_eq!(s.source.recent_days, 0);
        assert_eq!(s.source.url(), "https://x.org/papers/date/{date}");
    }

    #[test]
    fn environment_overrides_win_and_are_typed() {
        let vars = [
            ("PAPERBOY_MAIL__SMTP__PORT", "2525"),
            ("PAPERBOY_MAIL__TRANSPORT", "smtp"),
            ("PAPERBOY_WEB__TRUST_FORWARDED_FOR", "true"),
            ("PAPERBOY_PUBLIC_URL", "https://papers.example.org"),
            ("PAPERBOY_MAIL__SMTP__USERNAME", "pb"),
            ("PAPERBOY_SMTP_PASSWORD", "not-a-key"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let s = Settings::from_toml_with_env("[mail.smtp]\nport = 25\n", vars).unwrap();
        assert_eq!(s.mail.smtp.port, 2525);
        assert_eq!(s.mail.transport, Transport::Smtp);
        assert!(s.web.trust_forwarded_for);
        assert_eq!(s.public_base(), "https://papers.example.org");
        assert_eq!(s.mail.smtp.username.as_deref(), Some("pb"));

        let bad = |k: &str, v: &str| {
            Settings::from_toml_with_env("", [(k.to_string(), v.to_string())]).unwrap_err()
        };
        assert!(bad("PAPERBOY_MAIL__SMTP__PROT", "25").contains("prot"));
        assert!(bad("PAPERBOY_MAIL__SMTP__PORT", "lots").contains("PAPERBOY_MAIL__SMTP__PORT"));
        assert!(bad("PAPERBOY_MAIL", "x").contains("section"));
    }

    #[test]
    fn credentials_fill_in_what_the_config_leaves_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("smtp-password"), "pw\n").unwrap();
        std::fs::write(dir.path().join("secret-key"), "").unwrap();
        let mut s = Settings::default();
        s.use_credentials(dir.path());
        assert_eq!(
            s.mail.smtp.password_file,
            Some(dir.path().join("smtp-password"))
        );
        assert_eq!(
            s.secret_file, None,
            "no secret-key credential, keep the default"
        );
        s.mail.smtp.username = Some("u".into());
        s.load_password().unwrap();
        assert_eq!(s.mail.smtp.password.unwrap().expose(), "pw");
    }

    #[test]
    fn dkim_settings_are_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let key = format!(
            "{}/tests/fixtures/dkim/ed25519.pem",
            env!("CARGO_MANIFEST_DIR")
        );
        let load = |toml: &str| -> Result<Settings, ConfigError> {
            let mut s = Settings::from_toml(toml).unwrap();
            s.use_credentials(dir.path());
            s.load_dkim_key()?;
            s.validate()?;
            if let Some(dkim) = &s.mail.dkim {
                crate::mail::dkim::Signer::from_settings(dkim)?;
            }
            Ok(s)
        };
        let err = |toml: &str| load(toml).unwrap_err().to_string();
        assert!(err("[mail.dkim]\ndomain = \"example.org\"").contains("mail.dkim.selector"));
        assert!(
            err("[mail.dkim]\nselector = \"pb\"\ndomain = \"a b\"").contains("mail.dkim.domain")
        );
        let no_key = "[mail.dkim]\nselector = \"pb\"\ndomain = \"example.org\"";
        assert!(
            err(no_key).contains("mail.dkim.key_file"),
            "{}",
            err(no_key)
        );
        // The systemd credential fills in for key_file, and the key is never shown.
        std::fs::copy(&key, dir.path().join("dkim-key")).unwrap();
        let s = load(no_key).unwrap();
        assert!(crate::mail::dkim::Signer::from_settings(s.mail.dkim.as_ref().unwrap()).is_ok());
        let shown = s.to_masked_toml();
        assert!(
            shown.contains("# mail.dkim key: ******** (from "),
            "{shown}"
        );
        assert!(!shown.contains("PRIVATE KEY") && !format!("{s:?}").contains("PRIVATE KEY"));
        // No table, no signing.
        assert!(load("").unwrap().mail.dkim.is_none());
    }

    #[test]
    fn masked_output_hides_the_password() {
        let mut s = Settings::default();
        s.mail.smtp.username = Some("u".into());
        s.mail.smtp.password = Some(Secret("hunter2".into()));
        let out = s.to_masked_toml();
        assert!(!out.contains("hunter2"));
        assert!(out.contains("********"));
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
