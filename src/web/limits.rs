//! Rate limits on the subscribe form: per client address, per email address, and overall.
//! In memory: they protect the mail server and the addresses of strangers from floods, and
//! a restart that resets them is harmless (the one-notice-per-hour rule is in the store).

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::WebSettings;

pub struct Limits {
    per_client: DefaultKeyedRateLimiter<IpAddr>,
    per_address: DefaultKeyedRateLimiter<String>,
    overall: DefaultDirectRateLimiter,
}

fn per_hour(n: u32) -> Quota {
    Quota::per_hour(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

/// The key a client's requests are counted under: its IPv4 address, or the /64 of its IPv6
/// one, since a single host or home network is handed a whole /64 to pick addresses from.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

impl Limits {
    pub fn new(s: &WebSettings) -> Self {
        Self {
            per_client: RateLimiter::keyed(per_hour(s.subscribe_per_ip_per_hour)),
            per_address: RateLimiter::keyed(per_hour(s.subscribe_per_address_per_hour)),
            overall: RateLimiter::direct(per_hour(s.subscribe_per_hour)),
        }
    }

    /// Whether this client may post the form now (checked before anything else, so
    /// malformed posts spend their sender's budget).
    pub fn allow_client(&self, ip: IpAddr) -> bool {
        self.per_client.check_key(&client_key(ip)).is_ok()
    }

    /// Whether a well-formed request for this address may go ahead now: the address's own
    /// limit, then everyone's together. Only requests that could send mail spend the
    /// overall budget, so a flood of garbage cannot lock the form for everyone.
    pub fn allow_request(&self, address: &str) -> bool {
        self.per_address.check_key(&address.to_string()).is_ok() && self.overall.check().is_ok()
    }

    /// Forgets keys whose limits have recovered, so memory stays bounded.
    pub fn shrink(&self) {
        self.per_client.retain_recent();
        self.per_address.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            ip("2001:db8:1:2::")
        );
        assert_ne!(client_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn a_64_shares_one_budget_and_garbage_spares_the_overall_one() {
        let limits = Limits::new(&WebSettings {
            subscribe_per_ip_per_hour: 2,
            subscribe_per_hour: 2,
            ..WebSettings::default()
        });
        assert!(limits.allow_client(ip("2001:db8::1")));
        assert!(limits.allow_client(ip("2001:db8::2")));
        assert!(!limits.allow_client(ip("2001:db8::3")), "the same /64");
        assert!(limits.allow_client(ip("2001:db8:0:1::1")), "another /64");
        // Clients alone spend nothing of the overall budget.
        for i in 0..50 {
            assert!(limits.allow_client(ip(&format!("198.51.100.{i}"))));
        }
        assert!(limits.allow_request("a@example.org"));
        assert!(limits.allow_request("b@example.org"));
        assert!(!limits.allow_request("c@example.org"), "overall");
    }
}
