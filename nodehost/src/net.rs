//! Network namespaces, veths and bridges, made with `ip` (iproute2).
//!
//! One router namespace holds a bridge per VPC with each subnet's gateway (base + 1, like the
//! AWS VPC router), 169.254.169.254 on its loopback, and forwards between bridges, so nodes in
//! the home VPC and the other region's VPC reach each other as peered VPCs would. Each node has
//! its own namespace with one veth (`eth0`) whose other end sits on its VPC's bridge.
use crate::cmd::{run, run_tolerating};
use crate::state::{NodeRecord, RouterRecord};
use crate::{Error, IMDS_ADDR, Result};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// What iproute2 says (depending on its version) when an address is already on the link.
const ADDRESS_EXISTS: &[&str] = &["File exists", "Address already assigned"];

pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

pub fn netns_exists(name: &str) -> bool {
    // An empty name would be /run/netns itself.
    !name.is_empty() && !name.contains('/') && netns_path(name).exists()
}

/// The node's namespace name.
pub fn node_netns(instance_id: &str) -> String {
    format!("strata-{instance_id}")
}

/// Interface names are at most 15 bytes: a letter and the id's last 14 characters.
fn short_name(prefix: char, id: &str) -> String {
    let tail: String = id
        .rsplit('-')
        .next()
        .unwrap_or(id)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let start = tail.len().saturating_sub(14);
    format!("{prefix}{}", &tail[start..])
}

pub fn router_veth_name(instance_id: &str) -> String {
    short_name('v', instance_id)
}

pub fn bridge_name(vpc_id: &str) -> String {
    short_name('b', vpc_id)
}

/// A fixed MAC address for a bridge: locally administered, unicast, from the bridge's name.
///
/// Why fixed: a Linux bridge whose address was never set takes the lowest address of its
/// ports and changes it when ports come and go. When the port that lent it leaves (a node
/// stopping), every node that still has the old address in its ARP cache for its gateway
/// sends to a MAC the bridge no longer delivers to itself, and cannot reach the gateway (the
/// AWS forwarder and IMDS behind it) until its ARP entry expires: 30-45 s. Seen as "AWS
/// unreachable from some nodes while another node stops" in the booted failover test. An
/// address set by hand is kept whatever ports join or leave.
pub fn bridge_mac(bridge: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(bridge.as_bytes());
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        h[0], h[1], h[2], h[3], h[4]
    )
}

/// Parses "a.b.c.d/n" into (network base, prefix).
pub fn parse_cidr(cidr: &str) -> Result<(Ipv4Addr, u8)> {
    let bad = || Error::Invalid(format!("not an IPv4 CIDR: {cidr:?}"));
    let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    if prefix > 30 {
        return Err(bad());
    }
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    Ok((Ipv4Addr::from(u32::from(addr) & mask), prefix))
}

/// The subnet's router address: its first host address (base + 1), as in an AWS VPC.
pub fn gateway_of(cidr: &str) -> Result<(Ipv4Addr, u8)> {
    let (base, prefix) = parse_cidr(cidr)?;
    Ok((Ipv4Addr::from(u32::from(base) + 1), prefix))
}

/// Runs `f` on a fresh thread that has entered the named network namespace. Sockets it
/// creates keep that namespace when handed back to the (host-namespace) runtime.
pub fn in_netns<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    let path = netns_path(netns);
    let what = format!("in network namespace {netns}");
    let joined = std::thread::spawn(move || -> std::io::Result<T> {
        let file = std::fs::File::open(&path)?;
        // SAFETY: setns on a valid namespace fd only changes this (dedicated) thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        f()
    })
    .join()
    .map_err(|_| Error::Invalid(format!("thread {what} panicked")))?;
    joined.map_err(|e| Error::io(what, e))
}

/// A listening TCP socket bound inside the named namespace.
pub fn bind_in_netns(netns: &str, addr: SocketAddr) -> Result<std::net::TcpListener> {
    in_netns(netns, move || {
        let l = std::net::TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
}

/// Makes the router namespace if it is missing: loopback up with 169.254.169.254, forwarding on.
pub async fn ensure_router(netns: &str) -> Result<()> {
    if !netns_exists(netns) {
        run("ip", &["netns", "add", netns]).await?;
    }
    run("ip", &["-n", netns, "link", "set", "lo", "up"]).await?;
    let imds = format!("{IMDS_ADDR}/32");
    run_tolerating(
        "ip",
        &["-n", netns, "addr", "add", &imds, "dev", "lo"],
        ADDRESS_EXISTS,
    )
    .await?;
    in_netns(netns, || {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", b"1\n")
    })?;
    Ok(())
}

/// The VPC's bridge in the router namespace (made if missing).
pub async fn ensure_bridge(router: &mut RouterRecord, vpc_id: &str) -> Result<String> {
    let name = bridge_name(vpc_id);
    if let Some((other, _)) = router
        .bridges
        .iter()
        .find(|(v, b)| **b == name && v.as_str() != vpc_id)
    {
        return Err(Error::Invalid(format!(
            "VPCs {other} and {vpc_id} map to one bridge name {name}"
        )));
    }
    router.bridges.insert(vpc_id.to_string(), name.clone());
    run_tolerating(
        "ip",
        &["-n", &router.netns, "link", "add", &name, "type", "bridge"],
        &["File exists"],
    )
    .await?;
    let mac = bridge_mac(&name);
    run(
        "ip",
        &["-n", &router.netns, "link", "set", &name, "address", &mac],
    )
    .await?;
    run("ip", &["-n", &router.netns, "link", "set", &name, "up"]).await?;
    Ok(name)
}

/// The subnet's gateway address on its VPC's bridge.
pub async fn ensure_gateway(
    router: &mut RouterRecord,
    bridge: &str,
    gateway: Ipv4Addr,
    prefix: u8,
) -> Result<()> {
    let addr = format!("{gateway}/{prefix}");
    if let Some(b) = router.gateways.get(&addr)
        && b != bridge
    {
        return Err(Error::Invalid(format!(
            "subnet gateway {addr} is already on bridge {b} (another VPC with an overlapping \
             CIDR): one router namespace cannot route both; use distinct CIDRs"
        )));
    }
    router.gateways.insert(addr.clone(), bridge.to_string());
    run_tolerating(
        "ip",
        &["-n", &router.netns, "addr", "add", &addr, "dev", bridge],
        ADDRESS_EXISTS,
    )
    .await?;
    Ok(())
}

/// The node's namespace and veth, address and default route.
pub async fn node_up(router_netns: &str, bridge: &str, node: &NodeRecord) -> Result<()> {
    let ns = node
        .netns
        .as_deref()
        .ok_or_else(|| Error::Invalid("node has no netns name".into()))?;
    let veth = node
        .router_veth
        .as_deref()
        .ok_or_else(|| Error::Invalid("node has no veth name".into()))?;
    if !netns_exists(ns) {
        run("ip", &["netns", "add", ns]).await?;
    }
    // Both ends are made directly in their namespaces: no name ever appears on the host.
    run_tolerating(
        "ip",
        &[
            "link",
            "add",
            "eth0",
            "netns",
            ns,
            "type",
            "veth",
            "peer",
            "name",
            veth,
            "netns",
            router_netns,
        ],
        &["File exists"],
    )
    .await?;
    run(
        "ip",
        &["-n", router_netns, "link", "set", veth, "master", bridge],
    )
    .await?;
    run("ip", &["-n", router_netns, "link", "set", veth, "up"]).await?;
    run("ip", &["-n", ns, "link", "set", "lo", "up"]).await?;
    let addr = format!("{}/{}", node.private_ip, node.prefix);
    run_tolerating(
        "ip",
        &["-n", ns, "addr", "add", &addr, "dev", "eth0"],
        ADDRESS_EXISTS,
    )
    .await?;
    run("ip", &["-n", ns, "link", "set", "eth0", "up"]).await?;
    let gw = node.gateway.to_string();
    run(
        "ip",
        &[
            "-n", ns, "route", "replace", "default", "via", &gw, "dev", "eth0",
        ],
    )
    .await?;
    Ok(())
}

/// Removes the node's namespace (its veth pair goes with it) and the router end if left.
pub async fn node_down(router_netns: &str, node: &NodeRecord) -> Result<()> {
    if let Some(veth) = node.router_veth.as_deref()
        && netns_exists(router_netns)
    {
        run_tolerating(
            "ip",
            &["-n", router_netns, "link", "del", veth],
            &["Cannot find device", "does not exist"],
        )
        .await?;
    }
    if let Some(ns) = node.netns.as_deref() {
        delete_netns(ns).await?;
    }
    Ok(())
}

pub async fn delete_netns(name: &str) -> Result<()> {
    if netns_exists(name) {
        run_tolerating("ip", &["netns", "del", name], &["No such file"]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_is_the_first_host_address() {
        assert_eq!(
            gateway_of("10.42.1.0/24").unwrap(),
            (Ipv4Addr::new(10, 42, 1, 1), 24)
        );
        assert_eq!(
            gateway_of("10.42.1.77/20").unwrap(),
            (Ipv4Addr::new(10, 42, 0, 1), 20)
        );
        assert!(gateway_of("10.42.1.0").is_err());
        assert!(gateway_of("10.42.1.0/31").is_err());
        assert!(gateway_of("banana/24").is_err());
    }

    #[test]
    fn interface_names_fit_in_15_bytes() {
        assert_eq!(router_veth_name("i-0123456789abcdef0"), "v3456789abcdef0");
        assert!(router_veth_name("i-0123456789abcdef0").len() <= 15);
        assert_eq!(bridge_name("vpc-1a2b"), "b1a2b");
        assert!(bridge_name("vpc-0123456789abcdef0123").len() <= 15);
    }

    #[test]
    fn bridge_mac_is_fixed_unicast_and_locally_administered() {
        let m = bridge_mac("b1a2b");
        assert_eq!(m, bridge_mac("b1a2b"));
        assert_ne!(m, bridge_mac("b1a2c"));
        let bytes: Vec<u8> = m
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        assert_eq!(bytes.len(), 6);
        // Bit 0 of the first byte: multicast (must be clear); bit 1: locally administered.
        assert_eq!(bytes[0] & 0b11, 0b10);
    }
}
