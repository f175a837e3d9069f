//! End-to-end suite A: Debian's reference `bridge` plugin delegating IPAM to
//! our `host-local` inside two real network namespaces.
//!
//! Needs root, `ip`, `ping` (iputils-ping) and /usr/lib/cni/bridge; otherwise a
//! loud SKIPPED (a panic under IPAM_REQUIRE_ALL=1). Everything it creates
//! (netns, bridge, veths, files) is removed by a Drop guard, also on panic.
//! No address is put on the host: the bridge has no gateway address
//! (isGateway false), so traffic only flows between the two namespaces.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::common::run_plugin;
use crate::netns_util::*;

const BRIDGE_BIN: &str = "/usr/lib/cni/bridge";

/// Removes namespaces and links on drop (the veths die with their namespace).
struct Guard {
    netns: Vec<String>,
    links: Vec<String>,
    _tmp: tempfile::TempDir,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for ns in &self.netns {
            let _ = run("ip", &["netns", "del", ns]);
        }
        for l in &self.links {
            if run("ip", &["link", "show", l]).ok {
                let _ = run("ip", &["link", "del", l]);
            }
        }
    }
}

struct Net {
    conf: Value,
    cni_path: String,
    data_net_dir: PathBuf,
}

impl Net {
    fn call(&self, cmd: &str, ns: &str, cid: &str, conf: &Value) -> crate::common::Output {
        let netns = format!("/var/run/netns/{ns}");
        let env = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", self.cni_path.as_str()),
        ];
        run_plugin(Path::new(BRIDGE_BIN), &env, conf.to_string().as_bytes())
    }
    fn with_prev(&self, prev: &Value) -> Value {
        let mut c = self.conf.clone();
        c["prevResult"] = prev.clone();
        c
    }
}

/// One full scenario on a network whose IPAM is `ranges` (list of range sets,
/// each `[{"subnet": ..}]`); `subnets[i]` is the subnet of range set i.
fn scenario(what: &str, cni_version: &str, subnets: &[&str]) {
    if !preflight(what, &["ip", "ping"], &[BRIDGE_BIN]) {
        return;
    }
    let t0 = std::time::Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("hle2e-bridge-")
        .tempdir()
        .unwrap();
    let data_dir = tmp.path().join("data");
    let id = uniq("hlb");
    let br = id.clone(); // <= 3 + 5 + digits, fits IFNAMSIZ
    let ns = [format!("hle2e-{id}-a"), format!("hle2e-{id}-b")];
    let cids = [format!("hle2e-{id}-ctr-a"), format!("hle2e-{id}-ctr-b")];
    let mut guard = Guard {
        netns: Vec::new(),
        links: vec![br.clone()],
        _tmp: tmp,
    };

    for n in &ns {
        must("ip", &["netns", "add", n]);
        guard.netns.push(n.clone());
        must("ip", &["-n", n, "link", "set", "lo", "up"]);
        // No duplicate address detection inside the test namespaces: IPv6
        // addresses are usable at once (bridge also waits for them to settle).
        for k in ["default", "all"] {
            let _ = run(
                "ip",
                &[
                    "netns",
                    "exec",
                    n,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{k}.accept_dad=0"),
                ],
            );
        }
    }

    // Pre-create the bridge with a fixed MAC: otherwise the kernel gives it the
    // lowest MAC of its ports, which changes when the second veth joins and
    // makes bridge's CHECK fail ("Bridge interface ... Mac doesn't match").
    let h = br.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mac = format!(
        "02:e2:{:02x}:{:02x}:{:02x}:{:02x}",
        h >> 56,
        (h >> 48) & 0xff,
        (h >> 40) & 0xff,
        (h >> 32) & 0xff
    );
    must(
        "ip",
        &["link", "add", &br, "address", &mac, "type", "bridge"],
    );

    let dirs = vec![plugin_dir(), PathBuf::from(SYS_CNI_DIR)];
    let used = assert_ours_found_first(&dirs);
    eprintln!("{what}: bridge delegates IPAM to {}", used.display());
    let net_name = format!("hle2e-{id}");
    let ranges: Vec<Value> = subnets.iter().map(|s| json!([{ "subnet": s }])).collect();
    let net = Net {
        conf: json!({
            "cniVersion": cni_version,
            "name": net_name,
            "type": "bridge",
            "bridge": br,
            "isGateway": false,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "dataDir": data_dir,
                "ranges": ranges,
            }
        }),
        cni_path: join_paths(&dirs),
        data_net_dir: data_dir.join(&net_name),
    };

    // ---- ADD both ----
    let mut results = Vec::new();
    for i in 0..2 {
        let out = net.call("ADD", &ns[i], &cids[i], &net.conf);
        assert_eq!(
            out.code, 0,
            "ADD {} failed: {}{}",
            cids[i], out.stdout, out.stderr
        );
        results.push(out.json());
    }

    // Addresses in each result: one per range set, in that set's subnet, distinct.
    let mut expected_store = BTreeMap::new();
    let mut per_ns: Vec<Vec<String>> = Vec::new(); // plain addresses per namespace
    for (i, res) in results.iter().enumerate() {
        assert_eq!(res["cniVersion"], cni_version, "result version: {res}");
        let ips = res["ips"]
            .as_array()
            .unwrap_or_else(|| panic!("no ips in {res}"));
        assert_eq!(
            ips.len(),
            subnets.len(),
            "one address per range set expected: {res}"
        );
        let mut cidrs = BTreeSet::new();
        let mut plain = Vec::new();
        for (j, ip) in ips.iter().enumerate() {
            let cidr = ip["address"].as_str().unwrap();
            let a = addr_of(cidr);
            assert!(
                in_subnet(&a, subnets[j]),
                "{a} not in range set {j} ({})",
                subnets[j]
            );
            let gw = gateway_of(subnets[j]);
            assert_ne!(a, gw, "the gateway {gw} was handed out");
            if let Some(g) = ip["gateway"].as_str() {
                assert_eq!(g, gw, "gateway in result");
            }
            let prefix = cidr.split('/').nth(1).unwrap();
            cidrs.insert(format!("{a}/{prefix}"));
            assert!(
                expected_store
                    .insert(a.clone(), (cids[i].clone(), "eth0".to_owned()))
                    .is_none(),
                "duplicate address {a} handed to both namespaces"
            );
            plain.push(a);
        }
        // The addresses of the result are configured inside the namespace.
        assert_eq!(
            ns_addrs(&ns[i], "eth0"),
            cidrs,
            "addresses on eth0 in {} differ from the ADD result",
            ns[i]
        );
        per_ns.push(plain);
    }
    // The store holds exactly these reservations, with "<containerID>\r\n<ifname>".
    assert_store(&net.data_net_dir, &expected_store, "after ADD");

    // ---- traffic between the two namespaces, each family, both ways ----
    for (from, to) in [(0usize, 1usize), (1, 0)] {
        for target in &per_ns[to] {
            let r = ping_from_ns(&ns[from], target);
            assert!(
                r.ok,
                "ping {} -> {target} failed: {}{}",
                ns[from], r.stdout, r.stderr
            );
        }
    }

    // ---- CHECK through bridge with the ADD result as prevResult ----
    for i in 0..2 {
        let out = net.call("CHECK", &ns[i], &cids[i], &net.with_prev(&results[i]));
        assert_eq!(
            out.code, 0,
            "CHECK {} failed: {}{}",
            cids[i], out.stdout, out.stderr
        );
    }
    // CHECK must reach IPAM: with A's reservation files gone it has to fail
    // (host-local's CHECK looks the attachment up in the store).
    let aside = net.data_net_dir.with_extension("aside");
    std::fs::create_dir_all(&aside).unwrap();
    for a in &per_ns[0] {
        std::fs::rename(net.data_net_dir.join(a), aside.join(a)).unwrap();
    }
    let out = net.call("CHECK", &ns[0], &cids[0], &net.with_prev(&results[0]));
    for a in &per_ns[0] {
        std::fs::rename(aside.join(a), net.data_net_dir.join(a)).unwrap();
    }
    assert_ne!(
        out.code, 0,
        "CHECK passed although the reservations {:?} were missing",
        per_ns[0]
    );
    // ... and pass again once they are back.
    let out = net.call("CHECK", &ns[0], &cids[0], &net.with_prev(&results[0]));
    assert_eq!(
        out.code, 0,
        "CHECK failed after restoring: {}{}",
        out.stdout, out.stderr
    );

    // ---- DEL both (twice: DEL is idempotent) ----
    for i in 0..2 {
        for round in 0..2 {
            let out = net.call("DEL", &ns[i], &cids[i], &net.with_prev(&results[i]));
            assert_eq!(
                out.code, 0,
                "DEL #{round} {} failed: {}{}",
                cids[i], out.stdout, out.stderr
            );
        }
        assert!(
            !run("ip", &["-n", &ns[i], "link", "show", "eth0"]).ok,
            "eth0 still in {}",
            ns[i]
        );
    }
    assert_store(&net.data_net_dir, &BTreeMap::new(), "after DEL");
    assert!(
        bridge_ports(&br).is_empty(),
        "veths left on {br}: {:?}",
        bridge_ports(&br)
    );

    drop(guard);
    for n in &ns {
        assert!(
            !Path::new("/var/run/netns").join(n).exists(),
            "netns {n} left behind"
        );
    }
    assert!(
        !run("ip", &["link", "show", &br]).ok,
        "bridge {br} left behind"
    );
    eprintln!("{what}: passed in {:.1?}", t0.elapsed());
}

fn in_subnet(addr: &str, subnet: &str) -> bool {
    let (net, len) = subnet.split_once('/').unwrap();
    let len: u32 = len.parse().unwrap();
    let a: std::net::IpAddr = addr.parse().unwrap();
    let n: std::net::IpAddr = net.parse().unwrap();
    match (a, n) {
        (std::net::IpAddr::V4(a), std::net::IpAddr::V4(n)) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & m == u32::from(n) & m
        }
        (std::net::IpAddr::V6(a), std::net::IpAddr::V6(n)) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & m == u128::from(n) & m
        }
        _ => false,
    }
}

/// host-local's default gateway: the first address of the subnet.
fn gateway_of(subnet: &str) -> String {
    let net: std::net::IpAddr = subnet.split('/').next().unwrap().parse().unwrap();
    match net {
        std::net::IpAddr::V4(n) => std::net::Ipv4Addr::from(u32::from(n) + 1).to_string(),
        std::net::IpAddr::V6(n) => std::net::Ipv6Addr::from(u128::from(n) + 1).to_string(),
    }
}

#[test]
fn bridge_e2e_ipv4_two_netns() {
    scenario(
        "bridge e2e (IPv4, CNI 1.0.0)",
        "1.0.0",
        &["10.244.201.0/24"],
    );
}

#[test]
fn bridge_e2e_dual_stack_two_netns() {
    scenario(
        "bridge e2e (dual stack, CNI 0.4.0)",
        "0.4.0",
        &["10.244.202.0/24", "fd00:e2e:202::/64"],
    );
}
