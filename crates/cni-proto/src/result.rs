//! One internal result model (1.1.0) and pure conversions to and from each version's wire shape.
//!
//! Presence rules follow the Go types (types/020, 040, 100) and the reference's real ADD output
//! (verified for 0.1.0, 0.2.0, 0.3.0, 0.4.0, 1.0.0): `"dns": {}` is always printed, even empty;
//! `interfaces`, `ips` and `routes` are left out when empty; `gateway`, `gw` and `interface` when
//! absent; in 0.1.0/0.2.0 `routes` of `ip4`/`ip6` when empty.
//!
//! Over 600 lines only by its unit tests (from `mod tests` on, about half the file): each
//! version's wire shape and the round trips.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::error::ProtoError;
use crate::gojson::{self, Doc, Field, Kind};
use crate::version::SpecVersion;

/// A plugin's result, in the newest (1.1.0) model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

crate::go_struct! {
    /// An interface of a result (Go's types040/types100 `Interface`).
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
    pub struct Interface {
        #[go("name", Kind::Scalar)]
        #[serde(default)]
        pub name: String,
        #[go("mac", Kind::Scalar)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub mac: Option<String>,
        #[go("mtu", Kind::Scalar)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub mtu: Option<u32>,
        #[go("sandbox", Kind::Scalar)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub sandbox: Option<String>,
        #[go("socketPath", Kind::Scalar)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub socket_path: Option<String>,
        #[go("pciID", Kind::Scalar)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pci_id: Option<String>,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpConfig {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
    /// Index into the result's interfaces.
    pub interface: Option<u32>,
}

crate::go_struct! {
    /// A route, in the config's shape too (`{"dst","gw"?,"mtu"?,"advmss"?,"priority"?,"table"?,"scope"?}`).
    /// `"gw": ""` reads as no gateway, as Go's `net.IP` does.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    pub struct Route {
        #[go("dst", Kind::Whole)]
        pub dst: IpNet,
        #[go("gw", Kind::Whole)]
        #[serde(
            default,
            deserialize_with = "opt_ip",
            skip_serializing_if = "Option::is_none"
        )]
        pub gw: Option<IpAddr>,
        #[go("mtu", Kind::Scalar)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub mtu: Option<u32>,
        #[go("advmss", Kind::Scalar)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub advmss: Option<u32>,
        #[go("priority", Kind::Scalar)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub priority: Option<u32>,
        #[go("table", Kind::Scalar)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub table: Option<u32>,
        #[go("scope", Kind::Scalar)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub scope: Option<u32>,
    }
}

impl Route {
    /// A route with only a destination and an optional gateway.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }

    fn has_v1_1_fields(&self) -> bool {
        self.mtu.is_some()
            || self.advmss.is_some()
            || self.priority.is_some()
            || self.table.is_some()
            || self.scope.is_some()
    }

    fn strip_v1_1_fields(mut self) -> Route {
        self.mtu = None;
        self.advmss = None;
        self.priority = None;
        self.table = None;
        self.scope = None;
        self
    }
}

crate::go_struct! {
    /// DNS settings, in the config's shape (`{"nameservers","domain","search","options"}`; null
    /// reads as empty). Empty parts are left out when written.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
    pub struct Dns {
        #[go("nameservers", Kind::List(&SCALAR))]
        #[serde(
            default,
            deserialize_with = "null_vec",
            skip_serializing_if = "Vec::is_empty"
        )]
        pub nameservers: Vec<String>,
        #[go("domain", Kind::Scalar)]
        #[serde(default, skip_serializing_if = "opt_str_empty")]
        pub domain: Option<String>,
        #[go("search", Kind::List(&SCALAR))]
        #[serde(
            default,
            deserialize_with = "null_vec",
            skip_serializing_if = "Vec::is_empty"
        )]
        pub search: Vec<String>,
        #[go("options", Kind::List(&SCALAR))]
        #[serde(
            default,
            deserialize_with = "null_vec",
            skip_serializing_if = "Vec::is_empty"
        )]
        pub options: Vec<String>,
    }
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && opt_str_empty(&self.domain)
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

fn opt_str_empty(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(str::is_empty)
}

fn null_vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn opt_ip<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("invalid IP address {s:?}"))),
    }
}

fn s(v: impl ToString) -> Value {
    Value::String(v.to_string())
}

fn dns_value(dns: &Dns) -> Value {
    // Dns serialises with its empty parts omitted; `{}` when all are empty.
    serde_json::to_value(dns).unwrap_or_else(|_| Value::Object(Map::new()))
}

fn route_value(r: &Route, version: SpecVersion) -> Result<Value, ProtoError> {
    if version < SpecVersion::V1_1_0 && r.has_v1_1_fields() {
        return Err(ProtoError::Convert {
            version,
            reason: format!(
                "route to {} carries mtu/advmss/priority/table/scope, which need CNI 1.1.0",
                r.dst
            ),
        });
    }
    let mut m = Map::new();
    m.insert("dst".into(), s(r.dst));
    if let Some(gw) = r.gw {
        m.insert("gw".into(), s(gw));
    }
    for (k, v) in [
        ("mtu", r.mtu),
        ("advmss", r.advmss),
        ("priority", r.priority),
        ("table", r.table),
        ("scope", r.scope),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), Value::from(v));
        }
    }
    Ok(Value::Object(m))
}

fn interface_value(i: &Interface, version: SpecVersion) -> Result<Value, ProtoError> {
    if version < SpecVersion::V1_1_0
        && (i.mtu.is_some() || i.socket_path.is_some() || i.pci_id.is_some())
    {
        return Err(ProtoError::Convert {
            version,
            reason: format!(
                "interface {:?} carries mtu/socketPath/pciID, which need CNI 1.1.0",
                i.name
            ),
        });
    }
    let mut m = Map::new();
    m.insert("name".into(), s(&i.name));
    let nonempty = |o: &Option<String>| o.as_ref().filter(|x| !x.is_empty()).map(s);
    if let Some(v) = nonempty(&i.mac) {
        m.insert("mac".into(), v);
    }
    if let Some(v) = i.mtu {
        m.insert("mtu".into(), Value::from(v));
    }
    if let Some(v) = nonempty(&i.sandbox) {
        m.insert("sandbox".into(), v);
    }
    if let Some(v) = nonempty(&i.socket_path) {
        m.insert("socketPath".into(), v);
    }
    if let Some(v) = nonempty(&i.pci_id) {
        m.insert("pciID".into(), v);
    }
    Ok(Value::Object(m))
}

fn family(n: &IpNet) -> &'static str {
    match n {
        IpNet::V4(_) => "4",
        IpNet::V6(_) => "6",
    }
}

impl CniResult {
    /// Encode in `version`'s wire shape (key order as Go prints it).
    ///
    /// Errors (`ProtoError::Convert`) when the result cannot be expressed: for 0.1.0/0.2.0 no
    /// address at all; below 1.1.0 a route or interface carrying 1.1.0-only fields. For
    /// 0.1.0/0.2.0, as in Go, only the first address of each family is kept, a route whose
    /// family has no address is dropped, and interfaces are dropped.
    pub fn to_wire(&self, version: SpecVersion) -> Result<Value, ProtoError> {
        let mut top = Map::new();
        top.insert("cniVersion".into(), s(version));
        if version <= SpecVersion::V0_2_0 {
            self.legacy_into(version, &mut top)?;
        } else {
            if !self.interfaces.is_empty() {
                let list = self
                    .interfaces
                    .iter()
                    .map(|i| interface_value(i, version))
                    .collect::<Result<Vec<_>, _>>()?;
                top.insert("interfaces".into(), Value::Array(list));
            }
            if !self.ips.is_empty() {
                let list = self
                    .ips
                    .iter()
                    .map(|ip| {
                        let mut m = Map::new();
                        if version < SpecVersion::V1_0_0 {
                            m.insert("version".into(), s(family(&ip.address)));
                        }
                        if let Some(i) = ip.interface {
                            m.insert("interface".into(), Value::from(i));
                        }
                        m.insert("address".into(), s(ip.address));
                        if let Some(gw) = ip.gateway {
                            m.insert("gateway".into(), s(gw));
                        }
                        Value::Object(m)
                    })
                    .collect();
                top.insert("ips".into(), Value::Array(list));
            }
            if !self.routes.is_empty() {
                let list = self
                    .routes
                    .iter()
                    .map(|r| route_value(r, version))
                    .collect::<Result<Vec<_>, _>>()?;
                top.insert("routes".into(), Value::Array(list));
            }
        }
        top.insert("dns".into(), dns_value(&self.dns));
        Ok(Value::Object(top))
    }

    fn legacy_into(
        &self,
        version: SpecVersion,
        top: &mut Map<String, Value>,
    ) -> Result<(), ProtoError> {
        let first = |fam: &str| self.ips.iter().find(|ip| family(&ip.address) == fam);
        let (ip4, ip6) = (first("4"), first("6"));
        if ip4.is_none() && ip6.is_none() {
            return Err(ProtoError::Convert {
                version,
                reason: "no IP addresses (0.1.0 and 0.2.0 results need at least one)".into(),
            });
        }
        let mut routes4 = Vec::new();
        let mut routes6 = Vec::new();
        for r in &self.routes {
            let v = route_value(r, version)?;
            let (has, list) = match r.dst {
                IpNet::V4(_) => (ip4.is_some(), &mut routes4),
                IpNet::V6(_) => (ip6.is_some(), &mut routes6),
            };
            // As the reference (types/020): a route goes with the address of its family, and
            // one whose family has no address is dropped.
            if has {
                list.push(v);
            }
        }
        for (key, ip, routes) in [("ip4", ip4, routes4), ("ip6", ip6, routes6)] {
            let Some(ip) = ip else { continue };
            let mut m = Map::new();
            m.insert("ip".into(), s(ip.address));
            if let Some(gw) = ip.gateway {
                m.insert("gateway".into(), s(gw));
            }
            if !routes.is_empty() {
                m.insert("routes".into(), Value::Array(routes));
            }
            top.insert(key.into(), Value::Object(m));
        }
        Ok(())
    }

    /// Decode a result (e.g. a prevResult) written in `version`'s shape. Lenient: unknown keys
    /// are ignored, `null` is absent; fields newer than `version` are ignored as Go does.
    /// Malformed documents are `ProtoError::Decode` (code 6).
    pub fn from_wire(value: &Value, version: SpecVersion) -> Result<CniResult, ProtoError> {
        let err = |e: serde_json::Error| ProtoError::Decode {
            what: format!("CNI {version} result"),
            reason: e.to_string(),
        };
        if !value.is_object() {
            return Err(ProtoError::Decode {
                what: format!("CNI {version} result"),
                reason: "a result must be a JSON object".to_owned(),
            });
        }
        // Keys as Go's encoding/json matches them (case, null, duplicates).
        let doc = Doc::from(value);
        let kind = if version <= SpecVersion::V0_2_0 {
            &WIRE02
        } else {
            &WIRE_CURRENT
        };
        let value = &gojson::normalize(&doc, kind);
        if version <= SpecVersion::V0_2_0 {
            let w = Wire02::deserialize(value).map_err(err)?;
            let mut out = CniResult {
                dns: w.dns.unwrap_or_default(),
                ..CniResult::default()
            };
            for ip in [w.ip4, w.ip6].into_iter().flatten() {
                out.ips.push(IpConfig {
                    address: ip.ip,
                    gateway: ip.gateway,
                    interface: None,
                });
                out.routes
                    .extend(ip.routes.into_iter().map(Route::strip_v1_1_fields));
            }
            return Ok(out);
        }
        let w = WireCurrent::deserialize(value).map_err(err)?;
        let old = version < SpecVersion::V1_1_0;
        Ok(CniResult {
            interfaces: w
                .interfaces
                .into_iter()
                .map(|mut i| {
                    if old {
                        i.mtu = None;
                        i.socket_path = None;
                        i.pci_id = None;
                    }
                    i
                })
                .collect(),
            ips: w
                .ips
                .into_iter()
                .map(|ip| IpConfig {
                    address: ip.address,
                    gateway: ip.gateway,
                    interface: ip.interface,
                })
                .collect(),
            routes: w
                .routes
                .into_iter()
                .map(|r| if old { r.strip_v1_1_fields() } else { r })
                .collect(),
            dns: w.dns.unwrap_or_default(),
        })
    }
}

static SCALAR: Kind = Kind::Scalar;
/// [`Route`] as Go decodes it, in a result or a configuration's `routes`: types.Route has its
/// own UnmarshalJSON, so a repeated route replaces, it does not merge.
pub static ROUTE: Kind = Kind::Record(Route::GO_FIELDS);
static ROUTE_FIELDS_PRE_1_1: [Field; 2] = gojson::pick(Route::GO_FIELDS, ["dst", "gw"]);
/// A route below 1.1.0: only `dst` and `gw` (the reference's types.Route); the 1.1.0 fields are
/// unknown keys, ignored whatever they hold.
pub static ROUTE_PRE_1_1: Kind = Kind::Record(&ROUTE_FIELDS_PRE_1_1);
static DNS: Kind = Kind::Struct {
    fields: Dns::GO_FIELDS,
    nullable: false,
};
static IP02: Kind = Kind::Struct {
    fields: WireIp02::GO_FIELDS,
    nullable: true,
};
/// types020.Result as Go decodes it.
static WIRE02: Kind = Kind::Struct {
    fields: Wire02::GO_FIELDS,
    nullable: false,
};
static IFACE: Kind = Kind::Struct {
    fields: Interface::GO_FIELDS,
    nullable: true,
};
static IP: Kind = Kind::Struct {
    fields: WireIp::GO_FIELDS,
    nullable: true,
};
/// types040/types100.Result as Go decodes it.
static WIRE_CURRENT: Kind = Kind::Struct {
    fields: WireCurrent::GO_FIELDS,
    nullable: false,
};

crate::go_struct! {
    /// types020.Result.
    struct Wire02 {
        #[go("ip4", IP02)]
        #[serde(default)]
        ip4: Option<WireIp02>,
        #[go("ip6", IP02)]
        #[serde(default)]
        ip6: Option<WireIp02>,
        #[go("dns", DNS)]
        #[serde(default)]
        dns: Option<Dns>,
    }
}

crate::go_struct! {
    /// types020.IPConfig.
    struct WireIp02 {
        #[go("ip", Kind::Whole)]
        ip: IpNet,
        #[go("gateway", Kind::Whole)]
        #[serde(default, deserialize_with = "opt_ip")]
        gateway: Option<IpAddr>,
        #[go("routes", Kind::List(&ROUTE))]
        #[serde(default, deserialize_with = "null_vec")]
        routes: Vec<Route>,
    }
}

crate::go_struct! {
    /// types040/types100.Result.
    struct WireCurrent {
        #[go("interfaces", Kind::List(&IFACE))]
        #[serde(default, deserialize_with = "null_vec")]
        interfaces: Vec<Interface>,
        #[go("ips", Kind::List(&IP))]
        #[serde(default, deserialize_with = "null_vec")]
        ips: Vec<WireIp>,
        #[go("routes", Kind::List(&ROUTE))]
        #[serde(default, deserialize_with = "null_vec")]
        routes: Vec<Route>,
        #[go("dns", DNS)]
        #[serde(default)]
        dns: Option<Dns>,
    }
}

crate::go_struct! {
    /// types040/types100.IPConfig, its fields in Go's order.
    struct WireIp {
        #[go("interface", Kind::Whole)]
        #[serde(default)]
        interface: Option<u32>,
        #[go("address", Kind::Whole)]
        address: IpNet,
        #[go("gateway", Kind::Whole)]
        #[serde(default, deserialize_with = "opt_ip")]
        gateway: Option<IpAddr>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The result of the reference's dual-stack ADD (two range sets, two routes).
    fn dual() -> CniResult {
        CniResult {
            interfaces: vec![],
            ips: vec![
                IpConfig {
                    address: net("10.9.0.2/24"),
                    gateway: Some(ip("10.9.0.1")),
                    interface: None,
                },
                IpConfig {
                    address: net("fd00::2/64"),
                    gateway: Some(ip("fd00::1")),
                    interface: None,
                },
            ],
            routes: vec![
                Route::new(net("0.0.0.0/0"), None),
                Route::new(net("::/0"), Some(ip("fd00::9"))),
            ],
            dns: Dns::default(),
        }
    }

    #[test]
    fn legacy_shape_matches_reference() {
        // Reference output for cniVersion 0.1.0 and 0.2.0 (same shape).
        for v in [SpecVersion::V0_1_0, SpecVersion::V0_2_0] {
            let got = dual().to_wire(v).unwrap();
            assert_eq!(
                got,
                json!({
                    "cniVersion": v.as_str(),
                    "ip4": {"ip": "10.9.0.2/24", "gateway": "10.9.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
                    "ip6": {"ip": "fd00::2/64", "gateway": "fd00::1", "routes": [{"dst": "::/0", "gw": "fd00::9"}]},
                    "dns": {}
                })
            );
            let back = CniResult::from_wire(&got, v).unwrap();
            assert_eq!(back, dual());
        }
    }

    #[test]
    fn legacy_keeps_first_of_each_family_and_no_empty_routes() {
        let mut r = dual();
        r.routes.clear();
        r.ips.insert(
            0,
            IpConfig {
                address: net("fd00::7/64"),
                gateway: None,
                interface: Some(0),
            },
        );
        r.ips.push(IpConfig {
            address: net("10.1.0.9/16"),
            gateway: None,
            interface: None,
        });
        r.interfaces.push(Interface {
            name: "eth0".into(),
            ..Interface::default()
        });
        assert_eq!(
            r.to_wire(SpecVersion::V0_2_0).unwrap(),
            json!({
                "cniVersion": "0.2.0",
                "ip4": {"ip": "10.9.0.2/24", "gateway": "10.9.0.1"},
                "ip6": {"ip": "fd00::7/64"},
                "dns": {}
            })
        );
    }

    #[test]
    fn legacy_conversion_errors() {
        let empty = CniResult::default();
        for v in [SpecVersion::V0_1_0, SpecVersion::V0_2_0] {
            assert!(
                matches!(empty.to_wire(v), Err(ProtoError::Convert { version, .. }) if version == v)
            );
        }
        // A v4 route with only a v6 address: dropped, as Go does.
        let r = CniResult {
            ips: vec![IpConfig {
                address: net("fd00::2/64"),
                gateway: None,
                interface: None,
            }],
            routes: vec![Route::new(net("0.0.0.0/0"), None)],
            ..CniResult::default()
        };
        assert_eq!(
            r.to_wire(SpecVersion::V0_2_0).unwrap(),
            json!({"cniVersion": "0.2.0", "ip6": {"ip": "fd00::2/64"}, "dns": {}})
        );
        // But every newer version is fine with no addresses.
        assert_eq!(
            empty.to_wire(SpecVersion::V0_3_0).unwrap(),
            json!({"cniVersion": "0.3.0", "dns": {}})
        );
    }

    #[test]
    fn v03_v04_shape_matches_reference() {
        for v in [
            SpecVersion::V0_3_0,
            SpecVersion::V0_3_1,
            SpecVersion::V0_4_0,
        ] {
            let got = dual().to_wire(v).unwrap();
            assert_eq!(
                got,
                json!({
                    "cniVersion": v.as_str(),
                    "ips": [
                        {"version": "4", "address": "10.9.0.2/24", "gateway": "10.9.0.1"},
                        {"version": "6", "address": "fd00::2/64", "gateway": "fd00::1"}
                    ],
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::9"}],
                    "dns": {}
                })
            );
            assert_eq!(CniResult::from_wire(&got, v).unwrap(), dual());
        }
    }

    #[test]
    fn v1_shape_matches_reference() {
        for v in [SpecVersion::V1_0_0, SpecVersion::V1_1_0] {
            let got = dual().to_wire(v).unwrap();
            assert_eq!(
                got,
                json!({
                    "cniVersion": v.as_str(),
                    "ips": [
                        {"address": "10.9.0.2/24", "gateway": "10.9.0.1"},
                        {"address": "fd00::2/64", "gateway": "fd00::1"}
                    ],
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::9"}],
                    "dns": {}
                })
            );
            assert_eq!(CniResult::from_wire(&got, v).unwrap(), dual());
        }
    }

    #[test]
    fn key_order_is_gos() {
        let mut r = dual();
        r.interfaces.push(Interface {
            name: "eth0".into(),
            mac: Some("00:11:22:33:44:55".into()),
            sandbox: Some("/proc/1/ns/net".into()),
            ..Interface::default()
        });
        r.ips[0].interface = Some(0);
        r.dns.nameservers.push("1.1.1.1".into());
        let v = r.to_wire(SpecVersion::V0_4_0).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["cniVersion", "interfaces", "ips", "routes", "dns"]);
        let ipkeys: Vec<_> = v["ips"][0].as_object().unwrap().keys().cloned().collect();
        assert_eq!(ipkeys, ["version", "interface", "address", "gateway"]);
        let ikeys: Vec<_> = v["interfaces"][0]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(ikeys, ["name", "mac", "sandbox"]);
    }

    #[test]
    fn dns_presence() {
        let mut r = dual();
        r.dns = Dns {
            nameservers: vec!["1.1.1.1".into()],
            domain: Some("d.e".into()),
            search: vec!["a.b".into()],
            options: vec!["ndots:2".into()],
        };
        // Reference (resolvConf given): all four keys in this order.
        let want = json!({"nameservers": ["1.1.1.1"], "domain": "d.e", "search": ["a.b"], "options": ["ndots:2"]});
        for v in SpecVersion::ALL {
            let got = r.to_wire(v).unwrap();
            assert_eq!(got["dns"], want);
            let keys: Vec<_> = got["dns"].as_object().unwrap().keys().cloned().collect();
            assert_eq!(keys, ["nameservers", "domain", "search", "options"]);
            assert_eq!(CniResult::from_wire(&got, v).unwrap().dns, r.dns);
        }
        r.dns = Dns {
            domain: Some(String::new()),
            search: vec!["x".into()],
            ..Dns::default()
        };
        assert_eq!(
            r.to_wire(SpecVersion::V1_0_0).unwrap()["dns"],
            json!({"search": ["x"]})
        );
        assert!(Dns::default().is_empty());
    }

    #[test]
    fn v1_1_fields() {
        let mut r = dual();
        r.routes[0].mtu = Some(1400);
        r.routes[0].table = Some(0);
        r.routes[1].scope = Some(253);
        r.routes[1].advmss = Some(1300);
        r.routes[1].priority = Some(10);
        r.interfaces.push(Interface {
            name: "net1".into(),
            mtu: Some(9000),
            socket_path: Some("/run/vhost.sock".into()),
            pci_id: Some("0000:00:1f.6".into()),
            ..Interface::default()
        });
        let got = r.to_wire(SpecVersion::V1_1_0).unwrap();
        assert_eq!(
            got["routes"],
            json!([
                {"dst": "0.0.0.0/0", "mtu": 1400, "table": 0},
                {"dst": "::/0", "gw": "fd00::9", "advmss": 1300, "priority": 10, "scope": 253}
            ])
        );
        assert_eq!(
            got["interfaces"],
            json!([{"name": "net1", "mtu": 9000, "socketPath": "/run/vhost.sock", "pciID": "0000:00:1f.6"}])
        );
        assert_eq!(CniResult::from_wire(&got, SpecVersion::V1_1_0).unwrap(), r);
        for v in &SpecVersion::ALL[..6] {
            assert!(
                matches!(r.to_wire(*v), Err(ProtoError::Convert { .. })),
                "{v}"
            );
        }
        // Only the interface carries 1.1.0 fields.
        let mut only_if = r.clone();
        only_if.routes = dual().routes;
        assert!(matches!(
            only_if.to_wire(SpecVersion::V1_0_0),
            Err(ProtoError::Convert { .. })
        ));
        // Older shapes ignore the newer fields when decoding.
        let old = CniResult::from_wire(&got, SpecVersion::V1_0_0).unwrap();
        assert_eq!(old.routes, dual().routes);
        assert_eq!(old.interfaces[0].mtu, None);
    }

    #[test]
    fn from_wire_uses_go_key_rules() {
        let w = json!({"IPs": [{"Address": "10.0.0.2/24", "GATEWAY": "10.0.0.1"}],
            "Routes": [{"Dst": "0.0.0.0/0", "GW": "10.0.0.1"}], "DNS": {"Nameservers": ["1.1.1.1"]}});
        let r = CniResult::from_wire(&w, SpecVersion::V1_0_0).unwrap();
        assert_eq!(r.ips[0].gateway, Some(ip("10.0.0.1")));
        assert_eq!(r.routes[0].gw, Some(ip("10.0.0.1")));
        assert_eq!(r.dns.nameservers, ["1.1.1.1"]);
        let w = json!({"IP4": {"IP": "10.0.0.2/24", "Routes": [{"DST": "0.0.0.0/0"}]}});
        let r = CniResult::from_wire(&w, SpecVersion::V0_2_0).unwrap();
        assert_eq!(r.routes.len(), 1);
    }

    #[test]
    fn from_wire_is_lenient() {
        let v = json!({
            "cniVersion": "0.4.0", "extra": true, "interfaces": null,
            "ips": [{"version": "4", "address": "10.0.0.5/8", "gateway": "", "interface": 2, "x": 1}],
            "routes": [{"dst": "10.0.0.0/8", "gw": null}],
            "dns": null
        });
        let r = CniResult::from_wire(&v, SpecVersion::V0_4_0).unwrap();
        assert_eq!(
            r,
            CniResult {
                interfaces: vec![],
                ips: vec![IpConfig {
                    address: net("10.0.0.5/8"),
                    gateway: None,
                    interface: Some(2)
                }],
                routes: vec![Route::new(net("10.0.0.0/8"), None)],
                dns: Dns::default(),
            }
        );
        assert_eq!(
            CniResult::from_wire(&json!({}), SpecVersion::V1_0_0).unwrap(),
            CniResult::default()
        );
        assert_eq!(
            CniResult::from_wire(&json!({"ip4": null}), SpecVersion::V0_1_0).unwrap(),
            CniResult::default()
        );
    }

    #[test]
    fn from_wire_errors() {
        for (v, bad) in [
            (SpecVersion::V1_0_0, json!([])),
            (SpecVersion::V1_0_0, json!({"ips": [{"address": "nope"}]})),
            (
                SpecVersion::V1_0_0,
                json!({"ips": [{"gateway": "1.2.3.4"}]}),
            ),
            (SpecVersion::V0_4_0, json!({"routes": [{"gw": "1.2.3.4"}]})),
            (
                SpecVersion::V0_4_0,
                json!({"ips": [{"address": "1.2.3.4/8", "interface": -1}]}),
            ),
            (SpecVersion::V0_2_0, json!({"ip4": {"gateway": "1.2.3.4"}})),
            (
                SpecVersion::V0_2_0,
                json!({"ip4": {"ip": "1.2.3.4/8", "gateway": "x"}}),
            ),
            (
                SpecVersion::V0_2_0,
                json!({"dns": {"nameservers": "1.1.1.1"}}),
            ),
        ] {
            match CniResult::from_wire(&bad, v) {
                Err(ProtoError::Decode { what, .. }) => assert!(what.contains(v.as_str())),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    /// Every table a result's schema reaches is the one of the struct serde decodes there, with
    /// the same keys: the wiring between tables (which struct's table a field points at) is
    /// hand-written, the keys of each are go_struct!'s.
    #[test]
    fn schemas_are_their_structs() {
        fn check<T: serde::de::DeserializeOwned>(root: &Kind, path: &[&str]) {
            let table = gojson::fields_at(root, path).unwrap_or_else(|| panic!("{path:?}"));
            assert_eq!(gojson::schema_drift::<T>(table), None, "{path:?}");
        }
        check::<WireCurrent>(&WIRE_CURRENT, &[]);
        check::<Interface>(&WIRE_CURRENT, &["interfaces"]);
        check::<WireIp>(&WIRE_CURRENT, &["ips"]);
        check::<Route>(&WIRE_CURRENT, &["routes"]);
        check::<Dns>(&WIRE_CURRENT, &["dns"]);
        check::<Wire02>(&WIRE02, &[]);
        check::<WireIp02>(&WIRE02, &["ip4"]);
        check::<WireIp02>(&WIRE02, &["ip6"]);
        check::<Route>(&WIRE02, &["ip4", "routes"]);
        check::<Dns>(&WIRE02, &["dns"]);
        check::<Route>(&ROUTE, &[]);
        // Below 1.1.0 a route is decoded into the same struct, its newer keys left out.
        let old: Vec<_> = gojson::fields_at(&ROUTE_PRE_1_1, &[])
            .unwrap()
            .iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(old, ["dst", "gw"]);
        let keys = gojson::serde_keys::<Route>().unwrap();
        assert!(old.iter().all(|k| keys.contains(k)), "{old:?} {keys:?}");
    }

    #[test]
    fn route_and_dns_config_shape() {
        let r: Route =
            serde_json::from_value(json!({"dst": "10.0.0.0/8", "gw": "10.0.0.1", "mtu": 1400}))
                .unwrap();
        assert_eq!(r.gw, Some(ip("10.0.0.1")));
        assert_eq!(r.mtu, Some(1400));
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"dst": "10.0.0.0/8", "gw": "10.0.0.1", "mtu": 1400})
        );
        let d: Dns =
            serde_json::from_value(json!({"nameservers": ["8.8.8.8"], "search": null})).unwrap();
        assert_eq!(d.nameservers, ["8.8.8.8"]);
        assert!(d.search.is_empty());
        assert!(serde_json::from_value::<Route>(json!({"gw": "1.1.1.1"})).is_err());
    }

    fn arb_net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, p)| IpNet::new(
                std::net::Ipv4Addr::from(a).into(),
                p
            )
            .unwrap()),
            (any::<u128>(), 0u8..=128).prop_map(|(a, p)| IpNet::new(
                std::net::Ipv6Addr::from(a).into(),
                p
            )
            .unwrap()),
        ]
    }

    fn arb_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<u128>().prop_map(|a| IpAddr::from(std::net::Ipv6Addr::from(a))),
        ]
    }

    fn opt_text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[a-z0-9:/._<>&-]{1,12}")
    }

    fn arb_result(v11: bool) -> impl Strategy<Value = CniResult> {
        let num = move || {
            proptest::option::of(any::<u32>()).prop_map(move |x| if v11 { x } else { None })
        };
        let iface = (
            "[a-z0-9]{0,8}",
            opt_text(),
            num(),
            opt_text(),
            opt_text(),
            opt_text(),
        )
            .prop_map(move |(name, mac, mtu, sandbox, sock, pci)| Interface {
                name,
                mac,
                mtu,
                sandbox,
                socket_path: if v11 { sock } else { None },
                pci_id: if v11 { pci } else { None },
            });
        let ipc = (
            arb_net(),
            proptest::option::of(arb_ip()),
            proptest::option::of(any::<u32>()),
        )
            .prop_map(|(address, gateway, interface)| IpConfig {
                address,
                gateway,
                interface,
            });
        let route = (
            arb_net(),
            proptest::option::of(arb_ip()),
            num(),
            num(),
            num(),
            num(),
            num(),
        )
            .prop_map(|(dst, gw, mtu, advmss, priority, table, scope)| Route {
                dst,
                gw,
                mtu,
                advmss,
                priority,
                table,
                scope,
            });
        let list = || proptest::collection::vec("[a-z0-9.:]{1,10}", 0..3);
        let dns = (list(), proptest::option::of("[a-z.]{1,10}"), list(), list()).prop_map(
            |(nameservers, domain, search, options)| Dns {
                nameservers,
                domain,
                search,
                options,
            },
        );
        (
            proptest::collection::vec(iface, 0..3),
            proptest::collection::vec(ipc, 0..4),
            proptest::collection::vec(route, 0..4),
            dns,
        )
            .prop_map(|(interfaces, ips, routes, dns)| CniResult {
                interfaces,
                ips,
                routes,
                dns,
            })
    }

    proptest! {
        #[test]
        fn round_trip_v03_to_v10(r in arb_result(false), idx in 0usize..4) {
            let v = [SpecVersion::V0_3_0, SpecVersion::V0_3_1, SpecVersion::V0_4_0, SpecVersion::V1_0_0][idx];
            let wire = r.to_wire(v).unwrap();
            prop_assert_eq!(&wire["cniVersion"], &json!(v.as_str()));
            // Through the printed text too.
            let text = crate::json::to_go_pretty(&wire);
            let reparsed: Value = serde_json::from_slice(&text).unwrap();
            prop_assert_eq!(CniResult::from_wire(&reparsed, v).unwrap(), r);
        }

        #[test]
        fn round_trip_v11(r in arb_result(true)) {
            let wire = r.to_wire(SpecVersion::V1_1_0).unwrap();
            prop_assert_eq!(CniResult::from_wire(&wire, SpecVersion::V1_1_0).unwrap(), r);
        }

        #[test]
        fn legacy_never_panics(r in arb_result(false), v in prop_oneof![Just(SpecVersion::V0_1_0), Just(SpecVersion::V0_2_0)]) {
            match r.to_wire(v) {
                Ok(w) => {
                    let back = CniResult::from_wire(&w, v).unwrap();
                    prop_assert!(back.ips.len() <= 2);
                    // Routes of a family with an address survive; the others are dropped.
                    let has = |v4: bool| r.ips.iter().any(|i| matches!(i.address, IpNet::V4(_)) == v4);
                    let kept = r.routes.iter().filter(|x| has(matches!(x.dst, IpNet::V4(_)))).count();
                    prop_assert_eq!(back.routes.len(), kept);
                }
                Err(ProtoError::Convert { .. }) => {}
                Err(e) => prop_assert!(false, "{e:?}"),
            }
        }
    }
}
