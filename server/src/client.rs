//! Who sent a request, for the per-client limits: the connection's peer, unless that peer is a
//! trusted proxy (a Space sits behind one), in which case the nearest address in
//! `X-Forwarded-For` that is not itself a trusted proxy. Addresses a client writes into the
//! header are never believed on their own: only what trusted proxies appended counts.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use ipnet::IpNet;

pub fn client_address(parts: &Parts, trusted_proxies: &[IpNet]) -> IpAddr {
    // Only tests that call the router directly have no connection.
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |info| info.0.ip());
    let trusted = |address: &IpAddr| trusted_proxies.iter().any(|range| range.contains(address));
    if !trusted(&peer) {
        return peer;
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
    forwarded
        .iter()
        .rev()
        .find(|hop| !trusted(hop))
        .or(forwarded.first())
        .copied()
        .unwrap_or(peer)
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
    }
}
