//! Who sent a request, for the per-client limits: the connection's peer, unless that peer is a
//! trusted proxy (a Space sits behind one), in which case the nearest address in
//! `X-Forwarded-For` that is not itself a trusted proxy. Addresses a client writes into the
//! header are never believed: only what trusted proxies appended counts, and when every hop is
//! a trusted one the nearest proxy stands for the client. An IPv6 visitor is its /64, the
//! block one subscriber (one phone, one home) is given.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::error::ApiError;

/// The visitor a request counts against (see [`client_address`]), for any route whose state
/// knows the trusted proxies.
pub struct Visitor(pub IpAddr);

pub trait TrustsProxies {
    fn trusted_proxies(&self) -> &[IpNet];
}

impl<S: TrustsProxies + Send + Sync> FromRequestParts<Arc<S>> for Visitor {
    type Rejection = Infallible;
    async fn from_request_parts(parts: &mut Parts, state: &Arc<S>) -> Result<Self, Infallible> {
        Ok(Self(client_address(parts, state.trusted_proxies())))
    }
}

/// The window of a per-minute limit.
pub const MINUTE: Duration = Duration::from_secs(60);
/// Past this many visitors, those without a request in the last minute are forgotten.
pub const VISITORS_KEPT: usize = 10_000;

/// When one visitor's requests of the last minute were made.
#[derive(Debug, Default)]
pub struct RecentRequests(VecDeque<Instant>);

impl RecentRequests {
    /// Forgets what is older than a minute; with `limit` requests left in it, the seconds until
    /// the next one is allowed.
    pub fn retry_after(&mut self, limit: usize, now: Instant) -> Option<u64> {
        while self.0.front().is_some_and(|first| now - *first >= MINUTE) {
            self.0.pop_front();
        }
        (self.0.len() >= limit).then(|| {
            let oldest = self.0.front().copied().unwrap_or(now);
            MINUTE.saturating_sub(now - oldest).as_secs().max(1)
        })
    }

    pub fn record(&mut self, now: Instant) {
        self.0.push_back(now);
    }

    /// No request in the last minute.
    pub fn is_idle(&self, now: Instant) -> bool {
        self.0.back().is_none_or(|last| now - *last >= MINUTE)
    }
}

/// A per-minute limit of its own for each visitor (the feedback routes have one).
pub struct PerMinute {
    limit: usize,
    visitors: Mutex<HashMap<IpAddr, RecentRequests>>,
}

impl PerMinute {
    /// `limit` is `[limits] requests_per_minute_per_client`, which the refusal names.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            visitors: Mutex::new(HashMap::new()),
        }
    }

    pub fn admit(&self, visitor: IpAddr) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut visitors = self
            .visitors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if visitors.len() > VISITORS_KEPT {
            visitors.retain(|_, recent| !recent.is_idle(now));
        }
        let recent = visitors.entry(visitor).or_default();
        if let Some(retry_after_seconds) = recent.retry_after(self.limit, now) {
            return Err(ApiError::ClientRateLimited {
                limit: self.limit,
                retry_after_seconds,
            });
        }
        recent.record(now);
        Ok(())
    }
}

pub fn client_address(parts: &Parts, trusted_proxies: &[IpNet]) -> IpAddr {
    // Only tests that call the router directly have no connection.
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |info| info.0.ip());
    let trusted = |address: &IpAddr| trusted_proxies.iter().any(|range| range.contains(address));
    if !trusted(&peer) {
        return visitor(peer);
    }
    let forwarded: Vec<IpAddr> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|hop| {
            let hop = hop.trim();
            hop.parse::<IpAddr>()
                .ok()
                .or_else(|| hop.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
        })
        .collect();
    // Read from the nearest hop outwards: each was written by the proxy in front of it, as
    // long as that proxy is trusted. The first that is not a proxy is the visitor; anything
    // left of it may be the visitor's own invention. When every hop is in a trusted range the
    // visitor is one of them but which is unknown: the hop our own peer wrote stands for it.
    match forwarded.iter().rev().find(|hop| !trusted(hop)) {
        Some(hop) => visitor(*hop),
        None => visitor(forwarded.last().copied().unwrap_or(peer)),
    }
}

/// The address the limits count: IPv6 addresses by their /64 (a subscriber gets 2^64 of them),
/// IPv4 ones (and IPv4 written as IPv6) as they are.
fn visitor(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(peer: [u8; 4], forwarded: Option<&str>) -> Parts {
        let mut request = Request::get("/").body(()).unwrap();
        if let Some(forwarded) = forwarded {
            request
                .headers_mut()
                .insert("x-forwarded-for", forwarded.parse().unwrap());
        }
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((peer, 40000))));
        request.into_parts().0
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let address =
            |peer, forwarded| client_address(&parts(peer, forwarded), &trusted).to_string();
        assert_eq!(
            address([203, 0, 113, 9], Some("1.2.3.4")),
            "203.0.113.9",
            "a direct client cannot pretend"
        );
        assert_eq!(address([10, 0, 0, 2], Some("1.2.3.4")), "1.2.3.4");
        assert_eq!(
            address([10, 0, 0, 2], Some("6.6.6.6, 1.2.3.4, 10.0.0.7")),
            "1.2.3.4",
            "spoofed hops to the left are ignored"
        );
        assert_eq!(address([10, 0, 0, 2], Some("garbage")), "10.0.0.2");
        assert_eq!(address([10, 0, 0, 2], None), "10.0.0.2");
        assert_eq!(
            address([10, 0, 0, 2], Some("10.1.1.1, 10.0.0.9")),
            "10.0.0.9",
            "every hop trusted: the one the peer wrote, not the client's own entry"
        );
        assert_eq!(
            address([10, 0, 0, 2], Some("2001:db8:1:2:aaaa::1")),
            address([10, 0, 0, 2], Some("2001:db8:1:2:ffff:1:2:3")),
            "one /64 is one visitor"
        );
        assert_eq!(
            address([10, 0, 0, 2], Some("2001:db8:1:2:aaaa::1")),
            "2001:db8:1:2::"
        );
        assert_eq!(address([10, 0, 0, 2], Some("::ffff:1.2.3.4")), "1.2.3.4");
    }
}
