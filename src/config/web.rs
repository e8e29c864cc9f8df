//! `[web]`: where the pages listen, and the limits that keep the subscribe form from being
//! used against its readers.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSettings {
    pub listen: SocketAddr,
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
    /// A connection that sends no complete request (or request body) for this long is
    /// closed.
    pub idle_timeout_secs: u32,
    /// Connections open at once; past it, new ones wait to be accepted.
    pub max_connections: u32,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            trust_forwarded_for: false,
            subscribe_per_ip_per_hour: 20,
            subscribe_per_address_per_hour: 5,
            subscribe_per_hour: 500,
            health_max_fetch_age_hours: 96,
            idle_timeout_secs: 20,
            max_connections: 1024,
        }
    }
}

impl WebSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            (
                "web.subscribe_per_ip_per_hour",
                self.subscribe_per_ip_per_hour,
            ),
            (
                "web.subscribe_per_address_per_hour",
                self.subscribe_per_address_per_hour,
            ),
            ("web.subscribe_per_hour", self.subscribe_per_hour),
            (
                "web.health_max_fetch_age_hours",
                self.health_max_fetch_age_hours,
            ),
            ("web.idle_timeout_secs", self.idle_timeout_secs),
            ("web.max_connections", self.max_connections),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        Ok(())
    }
}
