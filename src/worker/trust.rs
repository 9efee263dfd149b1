//! `forwarded-allow-ips`: the peers trusted to say who the client is, through
//! `X-Forwarded-For` / `X-Forwarded-Proto` / `Forwarded` headers or a PROXY
//! protocol header. Entries are IPs or CIDRs, or `*` for every peer; the
//! default is loopback. Unix-socket peers are always trusted (as in gunicorn):
//! only local processes that may open the socket can reach them.

use std::net::IpAddr;

/// What `forwarded-allow-ips` means when not set.
pub const DEFAULT_ALLOWED: &str = "127.0.0.1,::1";

/// One allowed network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    fn parse(entry: &str) -> Result<Net, String> {
        let (ip, prefix) = match entry.split_once('/') {
            Some((ip, bits)) => (ip, Some(bits)),
            None => (entry, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("'{entry}' is not an IP address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(bits) => match bits.parse::<u8>() {
                Ok(n) if n <= max && !bits.starts_with('+') => n,
                _ => return Err(format!("'{entry}': prefix length must be 0 to {max}")),
            },
        };
        Ok(Net { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
            if prefix == 0 {
                0
            } else {
                bits >> (width - prefix)
            }
        }
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), self.prefix, 32)
                    == masked(u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(net.into(), self.prefix, 128) == masked(ip.into(), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// Splits one option value into its entries (comma or whitespace separated,
/// as gunicorn takes them) and validates each.
pub fn parse_entries(value: &str) -> Result<Vec<String>, String> {
    let entries: Vec<String> = value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect();
    if entries.is_empty() {
        return Err("expected IP addresses or CIDR networks, or '*'".into());
    }
    for entry in &entries {
        if entry != "*" {
            Net::parse(entry)?;
        }
    }
    Ok(entries)
}

/// The compiled `forwarded-allow-ips` list.
#[derive(Clone, Debug, Default)]
pub struct TrustedPeers {
    all: bool,
    nets: Vec<Net>,
}

impl TrustedPeers {
    /// Entries already validated by [`parse_entries`]; an invalid one is skipped.
    pub fn new(entries: &[String]) -> TrustedPeers {
        let mut peers = TrustedPeers::default();
        for entry in entries {
            if entry == "*" {
                peers.all = true;
            } else if let Ok(net) = Net::parse(entry) {
                peers.nets.push(net);
            }
        }
        peers
    }

    /// Whether `ip` (an IPv4-mapped IPv6 address counts as IPv4) is trusted.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.all || self.nets.iter().any(|n| n.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(list: &str) -> TrustedPeers {
        TrustedPeers::new(&parse_entries(list).unwrap())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_is_loopback_only() {
        let p = peers(DEFAULT_ALLOWED);
        assert!(p.contains(ip("127.0.0.1")));
        assert!(p.contains(ip("::1")));
        assert!(p.contains(ip("::ffff:127.0.0.1")));
        assert!(!p.contains(ip("127.0.0.2")));
        assert!(!p.contains(ip("10.0.0.1")));
    }

    #[test]
    fn cidrs_and_star() {
        let p = peers("10.0.0.0/8, 192.168.1.0/24 2001:db8::/32");
        assert!(p.contains(ip("10.255.1.2")));
        assert!(!p.contains(ip("11.0.0.1")));
        assert!(p.contains(ip("192.168.1.200")));
        assert!(!p.contains(ip("192.168.2.1")));
        assert!(p.contains(ip("2001:db8:ffff::1")));
        assert!(!p.contains(ip("2001:db9::1")));
        assert!(!p.contains(ip("127.0.0.1")));
        let all = peers("*");
        assert!(all.contains(ip("203.0.113.1")) && all.contains(ip("::")));
        let zero = peers("0.0.0.0/0");
        assert!(zero.contains(ip("203.0.113.1")) && !zero.contains(ip("::1")));
        // Host bits in a network are masked off.
        assert!(peers("10.1.2.3/8").contains(ip("10.9.9.9")));
    }

    #[test]
    fn bad_entries() {
        for bad in [
            "",
            " , ",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host.example",
            "1.2.3.4/+8",
            "1.2.3.4/",
        ] {
            assert!(parse_entries(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_entries("10.0.0.0/8,*").unwrap(), ["10.0.0.0/8", "*"]);
    }
}
