//! Upstream's own host-local tests (containernetworking/plugins v1.1.1,
//! plugins/ipam/host-local), ported to drive the built binary through its
//! environment and stdin, as skel would. One file per Go test file; each Go
//! `It` is a Rust test of the same name in snake_case, each version-
//! parameterised one a module with one test per spec version (1.1.0 added).
//! docs/upstream-tests.md maps every Go test to its Rust test and lists what
//! could not be ported, and why.
//!
//! Adaptations common to every test: each config gets `dataDir` in a fresh
//! temporary directory (the Go unit tests of the allocator package never
//! touch a disk); where a Go test asserts an error text, our `msg` must start
//! with the text the reference binary prints for it (for allocator errors:
//! `failed to allocate for range N: ` followed by the allocator's text, as
//! the reference's main.go wraps it). Codes are not asserted (ours are our
//! own, docs/DIFFERENCES.md D4-D7).

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde_json::Value;

use super::common::{our_bin, run_plugin, Output};

mod allocator;
mod config;
mod dns;
mod host_local;
mod range;
mod range_set;

/// testutils.SpecVersionHasIPVersion: results carry `"version"` in `ips`.
pub fn has_ip_version(v: &str) -> bool {
    matches!(v, "0.3.0" | "0.3.1" | "0.4.0")
}

/// testutils.SpecVersionHasMultipleIPs.
pub fn has_multiple_ips(v: &str) -> bool {
    !matches!(v, "0.1.0" | "0.2.0")
}

/// The Go tests' `nspath`.
pub const NSPATH: &str = "/some/where";

/// One invocation: `cmd` for (container, ifname) with `conf` on stdin and
/// optional CNI_ARGS. The binary is ours, or `$UPSTREAM_BIN` when set (to
/// check the port itself against the reference, docs/upstream-tests.md).
pub fn call(cmd: &str, id: &str, ifname: &str, conf: &str, cni_args: Option<&str>) -> Output {
    let mut env = vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", NSPATH),
        ("CNI_IFNAME", ifname),
        ("CNI_PATH", "/opt/cni/bin"),
    ];
    if let Some(a) = cni_args {
        env.push(("CNI_ARGS", a));
    }
    let bin = std::env::var_os("UPSTREAM_BIN").map_or_else(our_bin, std::path::PathBuf::from);
    run_plugin(&bin, &env, conf.as_bytes())
}

pub fn add(id: &str, ifname: &str, conf: &str) -> Output {
    call("ADD", id, ifname, conf, None)
}

pub fn del(id: &str, ifname: &str, conf: &str) -> Output {
    call("DEL", id, ifname, conf, None)
}

/// `Expect(err).NotTo(HaveOccurred())`.
#[track_caller]
pub fn ok(out: &Output) -> Value {
    assert_eq!(
        out.code, 0,
        "expected success: {} {}",
        out.stdout, out.stderr
    );
    out.json()
}

/// `Expect(err).To(HaveOccurred())`; returns the error's `msg`.
#[track_caller]
pub fn fails(out: &Output) -> String {
    assert_ne!(out.code, 0, "expected an error: {}", out.stdout);
    out.json()["msg"]
        .as_str()
        .unwrap_or_else(|| panic!("error without msg: {}", out.stdout))
        .to_string()
}

/// The error's text, as the reference prints it, is the start of ours.
#[track_caller]
pub fn fails_with(out: &Output, reference: &str) {
    let msg = fails(out);
    assert!(
        msg.starts_with(reference),
        "msg does not start with the reference's text\n  reference: {reference:?}\n  ours:      {msg:?}"
    );
}

/// One entry of a result's `ips` (types100.IPConfig without interface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ip {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
}

/// One route (types.Route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
}

/// A result of any version read as types100.GetResult converts it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Res {
    pub ips: Vec<Ip>,
    pub routes: Vec<Route>,
    pub nameservers: Vec<String>,
    pub domain: String,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// `mustCIDR`: an address with its prefix length, host bits kept.
pub fn cidr(s: &str) -> IpNet {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|l| l.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn ip_entry(v: &Value) -> Ip {
    Ip {
        address: cidr(v["address"].as_str().or(v["ip"].as_str()).unwrap()),
        gateway: v["gateway"].as_str().map(ip),
    }
}

fn routes(v: &Value) -> Vec<Route> {
    v.as_array()
        .map(|l| {
            l.iter()
                .map(|r| Route {
                    dst: cidr(r["dst"].as_str().unwrap()),
                    gw: r["gw"].as_str().map(ip),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// types100.GetResult: a 0.1.0/0.2.0 result's `ip4`/`ip6` (with their routes)
/// or a later result's `ips` and `routes`, in one shape.
pub fn result(v: &Value) -> Res {
    let mut r = Res::default();
    if v.get("ips").is_some() || v.get("ip4").is_none() && v.get("ip6").is_none() {
        r.ips = v["ips"]
            .as_array()
            .map(|l| l.iter().map(ip_entry).collect())
            .unwrap_or_default();
        r.routes = routes(&v["routes"]);
    } else {
        for fam in ["ip4", "ip6"] {
            if let Some(c) = v.get(fam).filter(|c| !c.is_null()) {
                r.ips.push(ip_entry(c));
                r.routes.extend(routes(&c["routes"]));
            }
        }
    }
    let dns = &v["dns"];
    r.nameservers = strs(&dns["nameservers"]);
    r.domain = dns["domain"].as_str().unwrap_or_default().to_string();
    r.search = strs(&dns["search"]);
    r.options = strs(&dns["options"]);
    r
}

/// A config in the Go tests' form, with `dataDir` pointing at `dir`. `ipam`
/// is the ipam object without `type`/`dataDir`; `top` extra top-level keys.
pub fn conf(version: &str, name: &str, dir: &Path, ipam: Value, top: Value) -> String {
    let mut ipam = ipam;
    ipam["type"] = "host-local".into();
    ipam["dataDir"] = dir.to_str().unwrap().into();
    let mut c = serde_json::json!({
        "cniVersion": version,
        "name": name,
        "type": "ipvlan",
        "master": "foo0",
        "ipam": ipam,
    });
    if let Value::Object(m) = top {
        for (k, v) in m {
            c[k] = v;
        }
    }
    c.to_string()
}

/// A file's contents (`os.ReadFile` that must succeed).
#[track_caller]
pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// `_, err = os.Stat(p); Expect(err).To(HaveOccurred())`.
#[track_caller]
pub fn gone(p: &Path) {
    assert!(
        std::fs::symlink_metadata(p).is_err(),
        "{} still exists",
        p.display()
    );
}

/// Declares, for each `name => body`, a module `name` holding one test per
/// spec version calling `body(version)`: testutils.AllSpecVersions of
/// v1.1.1 (0.1.0 to 1.0.0), plus 1.1.0.
macro_rules! per_version {
    ($($name:ident => $body:ident;)*) => {
        $(
            mod $name {
                #[test]
                fn v0_1_0() {
                    super::$body("0.1.0")
                }
                #[test]
                fn v0_2_0() {
                    super::$body("0.2.0")
                }
                #[test]
                fn v0_3_0() {
                    super::$body("0.3.0")
                }
                #[test]
                fn v0_3_1() {
                    super::$body("0.3.1")
                }
                #[test]
                fn v0_4_0() {
                    super::$body("0.4.0")
                }
                #[test]
                fn v1_0_0() {
                    super::$body("1.0.0")
                }
                #[test]
                fn v1_1_0() {
                    super::$body("1.1.0")
                }
            }
        )*
    };
}
pub(crate) use per_version;
