//! `[source]`: where the papers are read, and how patiently.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

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
    pub url: Option<UrlTemplate>,
    /// How many days before the edition's the daily lists are also read, for papers that
    /// gain their upvotes late (0: none).
    pub recent_days: u32,
    /// One day's list, with `{date}`; unset, the kind's default.
    pub recent_url: Option<UrlTemplate>,
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
    pub url: Option<UrlTemplate>,
}

impl AlsoSource {
    pub fn url(&self) -> &str {
        self.url
            .as_ref()
            .map_or(self.kind.default_url(), UrlTemplate::as_str)
    }
}

impl SourceSettings {
    /// The URL template of the first source: `url`, else the kind's default.
    pub fn url(&self) -> &str {
        self.url
            .as_ref()
            .map_or(self.kind.default_url(), UrlTemplate::as_str)
    }

    /// The URL template of one day's list: `recent_url`, else the kind's default path on the
    /// host `url` names (so a mirror or a local test server serves the days too).
    pub fn recent_url(&self) -> String {
        if let Some(url) = &self.recent_url {
            return url.as_str().to_string();
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
    pub(super) fn resolved(&self) -> Self {
        let mut out = self.clone();
        out.url = Some(UrlTemplate(self.url().to_string()));
        out.recent_url = Some(UrlTemplate(self.recent_url()));
        for also in out.also.values_mut() {
            also.url = Some(UrlTemplate(also.url().to_string()));
        }
        out
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        check_source_url("source.url", self.url(), false)?;
        if !(1..=600).contains(&self.timeout_secs) {
            return Err(invalid("source.timeout_secs", "must be between 1 and 600"));
        }
        if self.max_bytes < 1024 {
            return Err(invalid("source.max_bytes", "must be at least 1024"));
        }
        if !(1..=10).contains(&self.max_attempts) {
            return Err(invalid("source.max_attempts", "must be between 1 and 10"));
        }
        if self.max_retry_wait_secs > 3600 {
            return Err(invalid(
                "source.max_retry_wait_secs",
                "must be at most 3600",
            ));
        }
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

/// A source address, `{date}` standing for the edition date (YYYY-MM-DD): an http(s) URL
/// once the date is filled in, checked when the settings are read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UrlTemplate(String);

impl UrlTemplate {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UrlTemplate {
    type Error = String;
    fn try_from(template: String) -> Result<Self, String> {
        let probe = template.replace("{date}", "2025-01-01");
        match url::Url::parse(&probe) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                Ok(Self(template))
            }
            _ => Err(format!("'{template}' is not an http(s) URL")),
        }
    }
}

impl From<UrlTemplate> for String {
    fn from(t: UrlTemplate) -> Self {
        t.0
    }
}
