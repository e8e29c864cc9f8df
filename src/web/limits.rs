//! Rate limits on the subscribe form: per client address, per email address, and overall.
//! In memory: they protect the mail server and the addresses of strangers from floods, and
//! a restart that resets them is harmless (the one-notice-per-hour rule is in the store).

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::WebSettings;

pub struct Limits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_address: DefaultKeyedRateLimiter<String>,
    overall: DefaultDirectRateLimiter,
}

fn per_hour(n: u32) -> Quota {
    Quota::per_hour(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl Limits {
    pub fn new(s: &WebSettings) -> Self {
        Self {
            per_ip: RateLimiter::keyed(per_hour(s.subscribe_per_ip_per_hour)),
            per_address: RateLimiter::keyed(per_hour(s.subscribe_per_address_per_hour)),
            overall: RateLimiter::direct(per_hour(s.subscribe_per_hour)),
        }
    }

    /// Whether this client may post the form now (checked before anything else).
    pub fn allow_client(&self, ip: IpAddr) -> bool {
        self.per_ip.check_key(&ip).is_ok() && self.overall.check().is_ok()
    }

    /// Whether this address may be asked for now (checked once the address is valid).
    pub fn allow_address(&self, address: &str) -> bool {
        self.per_address.check_key(&address.to_string()).is_ok()
    }

    /// Forgets keys whose limits have recovered, so memory stays bounded.
    pub fn shrink(&self) {
        self.per_ip.retain_recent();
        self.per_address.retain_recent();
    }
}
