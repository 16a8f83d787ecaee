//! Per-client limits: who the client is (its IP, seen through trusted
//! proxies), and how often it may do something expensive (open a
//! connection, start an upload).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::HttpRequest;
use governor::{Quota, RateLimiter, clock::DefaultClock, state::keyed::HashMapStateStore};

/// Proxies whose `X-Forwarded-For` is believed (the load balancer).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    /// Parses `CHAT_TRUSTED_PROXIES`: comma-separated addresses or networks
    /// (`10.0.0.5`, `172.16.0.0/12`); empty trusts nobody.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("'{s}' is not an IP address or network"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy;
    /// then the last address in `X-Forwarded-For` that is not itself a
    /// trusted proxy (earlier entries are the client's own say, not believed).
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        if !self.trusts(peer) {
            return Some(peer);
        }
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in forwarded.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.trusts(ip) => continue,
                Ok(ip) => return Some(ip),
                Err(_) => break,
            }
        }
        Some(peer)
    }
}

/// At most `n` of something per minute per client IP (a burst of `n`, then
/// `n` spread over the minute). Off when built with 0.
pub struct PerIpLimit {
    limiter: Option<RateLimiter<IpAddr, HashMapStateStore<IpAddr>, DefaultClock>>,
    per_minute: u32,
    checks: AtomicU64,
}

/// Checks between two sweeps of addresses whose allowance is full again.
const SWEEP_EVERY: u64 = 4096;

impl PerIpLimit {
    /// A limit of `per_minute` per IP; 0 turns it off.
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            limiter: NonZeroU32::new(per_minute)
                .map(|n| RateLimiter::hashmap(Quota::per_minute(n))),
            per_minute,
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one attempt by `ip`: `Err(seconds)` to wait when over the limit.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        // Forget addresses that are back to a full allowance, now and then,
        // so the table holds only recent clients.
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        limiter
            .check_key(&ip)
            .map_err(|_| 60u64.div_ceil(u64::from(self.per_minute)).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn a_client_gets_its_allowance_and_no_more_others_are_not_affected() {
        let limit = PerIpLimit::per_minute(3);
        for _ in 0..3 {
            assert_eq!(limit.check(ip("10.0.0.1")), Ok(()));
        }
        assert_eq!(limit.check(ip("10.0.0.1")), Err(20));
        assert_eq!(limit.check(ip("10.0.0.2")), Ok(()));
        let off = PerIpLimit::per_minute(0);
        for _ in 0..10_000 {
            assert_eq!(off.check(ip("10.0.0.1")), Ok(()));
        }
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse("10.0.0.5, 172.16.0.0/12").expect("valid");
        let direct = TestRequest::default()
            .peer_addr("203.0.113.9:4000".parse().expect("addr"))
            .insert_header(("x-forwarded-for", "1.2.3.4"))
            .to_http_request();
        assert_eq!(
            proxies.client_ip(&direct),
            Some(ip("203.0.113.9")),
            "a client cannot name itself"
        );
        let proxied = TestRequest::default()
            .peer_addr("10.0.0.5:4000".parse().expect("addr"))
            .insert_header(("x-forwarded-for", "6.6.6.6, 198.51.100.7, 172.20.0.3"))
            .to_http_request();
        assert_eq!(
            proxies.client_ip(&proxied),
            Some(ip("198.51.100.7")),
            "the hop the proxies saw"
        );
        let bare = TestRequest::default()
            .peer_addr("10.0.0.5:4000".parse().expect("addr"))
            .to_http_request();
        assert_eq!(proxies.client_ip(&bare), Some(ip("10.0.0.5")));
        assert!(TrustedProxies::parse("not-an-ip").is_err());
        assert!(TrustedProxies::parse("").expect("empty").0.is_empty());
    }
}
