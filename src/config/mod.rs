//! Settings: loaded from one TOML file, validated once, then trusted everywhere.
//!
//! The file is found at `--config`, else `$PAPERBOY_CONFIG`, else `./paperboy.toml`, else the
//! built-in defaults are used, which give a working first run (mail goes to files in
//! `./data/outbox`). Unknown keys are errors: a typo must not silently fall back to a default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where the store, the outbox and the signing key live. `$STATE_DIRECTORY` wins.
    pub data_dir: PathBuf,
    /// The base of every link in an email; must be reachable by readers.
    pub public_url: String,
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

/// What a source's URL answers with, which decides how its body is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// A Hugging Face Papers page, read through its `DailyPapers` data island.
    #[default]
    HfPage,
    /// The JSON of `GET /api/daily_papers`.
    HfApi,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::HfPage => "hf-page",
            SourceKind::HfApi => "hf-api",
        }
    }

    /// The list read for an edition when no `url` is set.
    pub fn default_url(self) -> &'static str {
        match self {
            SourceKind::HfPage => "https://huggingface.co/papers/trending",
            SourceKind::HfApi => "https://huggingface.co/api/daily_papers",
        }
    }

    /// One day's list, for the recent window, when no `recent_url` is set (its path goes on
    /// the host of the source's `url`).
    pub fn default_recent_url(self) -> &'static str {
        match self {
            SourceKind::HfPage => "https://huggingface.co/papers/date/{date}",
            SourceKind::HfApi => "https://huggingface.co/api/daily_papers?date={date}",
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most days back the recent window may reach: each is one more request per edition.
pub const MAX_RECENT_DAYS: u32 = 14;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceSettings {
    /// How the URL's answer is read.
    pub kind: SourceKind,
    /// The list to read; unset, the kind's default (see [`SourceSettings::url`]). `{date}` is
    /// replaced by the edition date (YYYY-MM-DD).
    pub url: Option<String>,
    /// How many days before the edition's the daily lists are also read, for papers that
    /// gain their upvotes late (0: none).
    pub recent_days: u32,
    /// One day's list, with `{date}`; unset, the kind's default.
    pub recent_url: Option<String>,
    pub timeout_secs: u64,
    /// The most bytes paperboy reads from one response.
    pub max_bytes: u64,
    /// Attempts per fetch for temporary failures (timeouts, refused connections, 429, 5xx).
    pub max_attempts: u32,
    /// The longest paperboy waits before a retry, also when a 429's `Retry-After` asks for
    /// more; a longer wait ends the run with the error instead.
    pub max_retry_wait_secs: u64,
    /// More sources, merged into the first by arXiv id, in the order of their names.
    pub also: BTreeMap<String, AlsoSource>,
}

/// A source besides the first (`[source.also.NAME]`); the first's limits apply to it too.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlsoSource {
    pub kind: SourceKind,
    /// Unset: the kind's default.
    pub url: Option<String>,
}

impl AlsoSource {
    pub fn url(&self) -> &str {
        self.url.as_deref().unwrap_or(self.kind.default_url())
    }
}

impl SourceSettings {
    /// The URL template of the first source: `url`, else the kind's default.
    pub fn url(&self) -> &str {
        self.url.as_deref().unwrap_or(self.kind.default_url())
    }

    /// The URL template of one day's list: `recent_url`, else the kind's default path on the
    /// host `url` names (so a mirror or a local test server serves the days too).
    pub fn recent_url(&self) -> String {
        if let Some(url) = &self.recent_url {
            return url.clone();
        }
        let default = self.kind.default_recent_url();
        let origin = url::Url::parse(&self.url().replace("{date}", "2025-01-01"))
            .ok()
            .filter(|u| u.has_host())
            .map(|u| u.origin().ascii_serialization());
        let path_at = "https://huggingface.co".len();
        match origin {
            Some(origin) => format!("{origin}{}", &default[path_at..]),
            None => default.to_string(),
        }
    }

    /// The same settings with every URL spelled out, for `check-config`.
    fn resolved(&self) -> Self {
        let mut out = self.clone();
        out.url = Some(self.url().to_string());
        out.recent_url = Some(self.recent_url());
        for also in out.also.values_mut() {
            also.url = Some(also.url().to_string());
        }
        out
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_source_url("source.url", self.url(), false)?;
        if self.recent_days > MAX_RECENT_DAYS {
            return Err(invalid(
                "source.recent_days",
                format!("must be between 0 and {MAX_RECENT_DAYS}"),
            ));
        }
        check_source_url("source.recent_url", &self.recent_url(), true)?;
        for (name, also) in &self.also {
            let key = format!("source.also.{name}");
            let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c);
            if name.is_empty() || !name.chars().all(plain) {
                return Err(invalid(
                    key,
                    "a source's name is lower-case letters, digits, - and _ (so that it can be set from the environment)",
                ));
            }
            check_source_url(&format!("{key}.url"), also.url(), false)?;
        }
        Ok(())
    }
}

/// An http(s) URL once `{date}` is filled in; `dated` ones must have the `{date}`.
fn check_source_url(key: &str, template: &str, dated: bool) -> Result<(), ConfigError> {
    let probe = template.replace("{date}", "2025-01-01");
    match url::Url::parse(&probe) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
        _ => {
            return Err(invalid(key, format!("'{template}' is not an http(s) URL")));
        }
    }
    if dated && !template.contains("{date}") {
        return Err(invalid(
            key,
            format!("'{template}' has no {{date}}, so every day would be the same list"),
        ));
    }
    Ok(())
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSettings {
    pub cron: String,
    pub timezone: String,
    /// After downtime across a scheduled time, the missed edition is still sent if paperboy
    /// is back within this many hours (0: never); later it is skipped.
    pub catch_up_hours: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigestSettings {
    pub max_items: u32,
    pub min_upvotes: u32,
    /// Days a paper is remembered after it was last seen on the source; see the README.
    pub retention_days: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    File,
    Smtp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    None,
    Starttls,
    Tls,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailSettings {
    pub from: String,
    pub transport: Transport,
    /// Where `transport = "file"` writes `.eml` files; default `{data_dir}/outbox`.
    pub outbox_dir: Option<PathBuf>,
    pub smtp: SmtpSettings,
    /// Sign every message with DKIM; unset, messages go unsigned.
    pub dkim: Option<DkimSettings>,
}

/// `[mail.dkim]`: the signing domain, the selector its public key is published under
/// (`SELECTOR._domainkey.DOMAIN`), and the private key.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DkimSettings {
    pub selector: String,
    pub domain: String,
    /// A PEM file with the private key (RSA or Ed25519); unset, the `dkim-key` systemd
    /// credential.
    pub key_file: Option<PathBuf>,
    /// Filled from `key_file`; never read from the TOML file itself, never printed.
    #[serde(skip)]
    pub key: Option<Secret>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub concurrency: u32,
    pub timeout_secs: u64,
    /// Attempts per message for temporary failures (4xx, refused connections) in one run.
    pub max_attempts: u32,
    /// Hours after planning when a digest that is still refused for now is given up.
    pub give_up_after_hours: u32,
    /// Messages per second at most (0: no cap).
    pub max_per_second: u32,
    /// Messages per hour at most, evenly spaced (0: no cap).
    pub max_per_hour: u32,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Filled from `password_file` or `$PAPERBOY_SMTP_PASSWORD`; never read from the TOML
    /// file itself, never printed.
    #[serde(skip)]
    pub password: Option<Secret>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSettings {
    pub listen: String,
    /// Take the client address from the last `X-Forwarded-For` entry (behind a reverse proxy).
    pub trust_forwarded_for: bool,
    /// Subscribe requests one client address may make per hour.
    pub subscribe_per_ip_per_hour: u32,
    /// Subscribe requests for one email address per hour.
    pub subscribe_per_address_per_hour: u32,
    /// Subscribe requests per hour from everyone together.
    pub subscribe_per_hour: u32,
    /// `/healthz` fails when the last successful fetch is older than this.
    pub health_max_fetch_age_hours: u32,
}

/// A secret value whose `Debug` shows nothing of it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(********)")
    }
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
            public_url: "http://127.0.0.1:8080".into(),
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

impl Default for SourceSettings {
    fn default() -> Self {
        Self {
            kind: SourceKind::HfPage,
            url: None,
            recent_days: 3,
            recent_url: None,
            timeout_secs: 30,
            max_bytes: 20 * 1024 * 1024,
            max_attempts: 3,
            max_retry_wait_secs: 60,
            also: BTreeMap::new(),
        }
    }
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            cron: "0 0 8 * * Mon-Fri".into(),
            timezone: "UTC".into(),
            catch_up_hours: 6,
        }
    }
}

impl Default for DigestSettings {
    fn default() -> Self {
        Self {
            max_items: 10,
            min_upvotes: 0,
            retention_days: 180,
        }
    }
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            from: "paperboy <digest@example.org>".into(),
            transport: Transport::File,
            outbox_dir: None,
            smtp: SmtpSettings::default(),
            dkim: None,
        }
    }
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 25,
            tls: Tls::None,
            concurrency: 4,
            timeout_secs: 30,
            max_attempts: 3,
            give_up_after_hours: 48,
            max_per_second: 0,
            max_per_hour: 0,
            username: None,
            password_file: None,
            password: None,
        }
    }
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            trust_forwarded_for: false,
            subscribe_per_ip_per_hour: 20,
            subscribe_per_address_per_hour: 5,
            subscribe_per_hour: 500,
            health_max_fetch_age_hours: 96,
        }
    }
}

/// Where the settings came from, for `check-config` and the startup log.
#[derive(Clone, Debug)]
pub enum Origin {
    File(PathBuf),
    Defaults,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Defaults => f.write_str("built-in defaults (no config file found)"),
        }
    }
}

impl Settings {
    /// Finds, reads and validates the settings, reading secrets from the environment.
    pub fn load(explicit: Option<&Path>) -> Result<(Self, Origin), ConfigError> {
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
        if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
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
            settings.use_credentials(&dir);
        }
        settings.load_password()?;
        settings.load_dkim_key()?;
        settings.validate()?;
        Ok((settings, origin))
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::from_toml(&read(path)?).map_err(|reason| ConfigError::Syntax {
            path: path.to_path_buf(),
            reason,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| one_line(&e.to_string()))
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
            let Some(rest) = name.strip_prefix("PAPERBOY_") else {
                continue;
            };
            if RESERVED_ENV.contains(&name.as_str()) || rest.is_empty() {
                continue;
            }
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
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| {
                let msg = one_line(&e.to_string());
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

    /// The DKIM signer the settings describe, if any; every way the key or names can be
    /// wrong is an error naming the key.
    pub fn dkim_signer(&self) -> Result<Option<crate::mail::dkim::Signer>, ConfigError> {
        let Some(dkim) = &self.mail.dkim else {
            return Ok(None);
        };
        // Both end up in DNS names (SELECTOR._domainkey.DOMAIN) and in the signature header.
        let dns_name = |s: &str| {
            !s.is_empty()
                && !s.starts_with(['.', '-'])
                && !s.ends_with(['.', '-'])
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        };
        if !dns_name(&dkim.selector) {
            return Err(invalid(
                "mail.dkim.selector",
                format!("'{}' is not a DNS label like \"paperboy\"", dkim.selector),
            ));
        }
        if !dns_name(&dkim.domain) || !dkim.domain.contains('.') {
            return Err(invalid(
                "mail.dkim.domain",
                format!("'{}' is not a domain like example.org", dkim.domain),
            ));
        }
        let Some(pem) = &dkim.key else {
            return Err(invalid(
                "mail.dkim.key_file",
                "not set, and no dkim-key credential: DKIM needs a private key",
            ));
        };
        crate::mail::dkim::Signer::new(&dkim.selector, &dkim.domain, pem.expose())
            .map(Some)
            .map_err(|e| {
                let file = dkim
                    .key_file
                    .as_ref()
                    .map_or_else(String::new, |f| format!("{}: ", f.display()));
                invalid("mail.dkim.key_file", format!("{file}{e}"))
            })
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

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        let public = url::Url::parse(&self.public_url).map_err(|e| {
            invalid(
                "public_url",
                format!("'{}' is not a URL: {e}", self.public_url),
            )
        })?;
        if !matches!(public.scheme(), "http" | "https") || public.host_str().is_none() {
            return Err(invalid(
                "public_url",
                "must be an http:// or https:// address",
            ));
        }
        if public.query().is_some() || public.fragment().is_some() {
            return Err(invalid("public_url", "must not have a query or fragment"));
        }
        self.source.validate()?;
        if !(1..=600).contains(&self.source.timeout_secs) {
            return Err(invalid("source.timeout_secs", "must be between 1 and 600"));
        }
        if self.source.max_bytes < 1024 {
            return Err(invalid("source.max_bytes", "must be at least 1024"));
        }
        if !(1..=10).contains(&self.source.max_attempts) {
            return Err(invalid("source.max_attempts", "must be between 1 and 10"));
        }
        if self.source.max_retry_wait_secs > 3600 {
            return Err(invalid(
                "source.max_retry_wait_secs",
                "must be at most 3600",
            ));
        }
        cron::Schedule::from_str(&self.schedule.cron).map_err(|e| {
            invalid(
                "schedule.cron",
                format!(
                    "'{}' is not a schedule ({e}); use 6 or 7 fields, seconds first, e.g. \"0 0 8 * * Mon-Fri\"",
                    self.schedule.cron
                ),
            )
        })?;
        self.timezone()?;
        if self.schedule.catch_up_hours > 48 {
            return Err(invalid("schedule.catch_up_hours", "must be at most 48"));
        }
        let max = crate::domain::MAX_ITEMS_CAP;
        if !(1..=max).contains(&self.digest.max_items) {
            return Err(invalid(
                "digest.max_items",
                format!("must be between 1 and {max}"),
            ));
        }
        if self.digest.retention_days < 90 {
            return Err(invalid(
                "digest.retention_days",
                "must be at least 90, or papers could be sent twice",
            ));
        }
        self.from_mailbox()?;
        self.dkim_signer()?;
        let smtp = &self.mail.smtp;
        if smtp.host.trim().is_empty() {
            return Err(invalid("mail.smtp.host", "must not be empty"));
        }
        if smtp.port == 0 {
            return Err(invalid("mail.smtp.port", "must not be 0"));
        }
        if !(1..=64).contains(&smtp.concurrency) {
            return Err(invalid("mail.smtp.concurrency", "must be between 1 and 64"));
        }
        if !(1..=600).contains(&smtp.timeout_secs) {
            return Err(invalid(
                "mail.smtp.timeout_secs",
                "must be between 1 and 600",
            ));
        }
        if !(1..=20).contains(&smtp.max_attempts) {
            return Err(invalid(
                "mail.smtp.max_attempts",
                "must be between 1 and 20",
            ));
        }
        if !(1..=720).contains(&smtp.give_up_after_hours) {
            return Err(invalid(
                "mail.smtp.give_up_after_hours",
                "must be between 1 and 720",
            ));
        }
        if smtp.password.is_some() && smtp.username.is_none() {
            return Err(invalid(
                "mail.smtp.username",
                "a password is set, but no username to go with it",
            ));
        }
        for (key, value) in [
            (
                "web.subscribe_per_ip_per_hour",
                self.web.subscribe_per_ip_per_hour,
            ),
            (
                "web.subscribe_per_address_per_hour",
                self.web.subscribe_per_address_per_hour,
            ),
            ("web.subscribe_per_hour", self.web.subscribe_per_hour),
            (
                "web.health_max_fetch_age_hours",
                self.web.health_max_fetch_age_hours,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        SocketAddr::from_str(&self.web.listen).map_err(|_| {
            invalid(
                "web.listen",
                format!(
                    "'{}' is not an address:port like 127.0.0.1:8080",
                    self.web.listen
                ),
            )
        })?;
        Ok(())
    }

    pub fn timezone(&self) -> Result<chrono_tz::Tz, ConfigError> {
        self.schedule.timezone.parse().map_err(|_| {
            invalid(
                "schedule.timezone",
                format!(
                    "'{}' is not an IANA time zone name like Europe/Berlin",
                    self.schedule.timezone
                ),
            )
        })
    }

    pub fn from_mailbox(&self) -> Result<lettre::message::Mailbox, ConfigError> {
        self.mail.from.parse().map_err(|_| {
            invalid(
                "mail.from",
                format!(
                    "'{}' is not a mailbox like \"paperboy <digest@example.org>\"",
                    self.mail.from
                ),
            )
        })
    }

    /// The public URL without a trailing slash, ready for `format!("{base}/unsubscribe")`.
    pub fn public_base(&self) -> &str {
        self.public_url.trim_end_matches('/')
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
        let shown = Self {
            source: self.source.resolved(),
            ..self.clone()
        };
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
            let s = Settings::from_toml(toml).unwrap();
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{toml}: {e}");
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
        mirror.source.url = Some("http://127.0.0.1:8000/papers/trending".into());
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
        assert_eq!(s.public_url, "https://papers.example.org");
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
        assert!(s.dkim_signer().unwrap().is_some());
        let shown = s.to_masked_toml();
        assert!(
            shown.contains("# mail.dkim key: ******** (from "),
            "{shown}"
        );
        assert!(!shown.contains("PRIVATE KEY") && !format!("{s:?}").contains("PRIVATE KEY"));
        // No table, no signing.
        assert!(load("").unwrap().dkim_signer().unwrap().is_none());
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
