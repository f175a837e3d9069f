//! The configuration as the reference's Go types decode it: typed serde structs for the parts of
//! a network configuration host-local reads, and the [`Kind`] schemas telling
//! [`cni_proto::gojson`] how Go's encoding/json fills them (key case, duplicates, `null`).
//! Each struct and its table are declared once, with [`go_struct!`], so their keys cannot
//! drift; the tests below check how the tables point at one another. Values stay text here; [`super::validate`] parses and checks them, naming the field path.

use cni_proto::go_struct;
use cni_proto::gojson::{self, Field, Kind};
use cni_proto::result::{ROUTE, ROUTE_PRE_1_1};
use serde::Deserialize;
use serde_json::Value;

static SCALAR: Kind = Kind::Scalar;
static WHOLE: Kind = Kind::Whole;

/// Declares a struct whose first fields are Go's `allocator.Range` (plus our `exclude`), written
/// once here: [`RawRange`] is them alone, and [`RawIpam`] holds them flat, as Go's IPAMConfig
/// embeds `*Range` (serde's flatten would lose the error paths). net.IP and types.IPNet decode
/// whole; `null` resets them.
macro_rules! with_range_fields {
    ($(#[$attr:meta])* pub struct $name:ident { $($rest:tt)* }) => {
        go_struct! {
            $(#[$attr])*
            pub struct $name {
                #[go("rangeStart", Kind::Whole)]
                pub range_start: Option<String>,
                #[go("rangeEnd", Kind::Whole)]
                pub range_end: Option<String>,
                #[go("subnet", Kind::Whole)]
                pub subnet: Option<String>,
                #[go("gateway", Kind::Whole)]
                pub gateway: Option<String>,
                #[go("exclude", Kind::List(&SCALAR))]
                pub exclude: Option<Vec<String>>,
                $($rest)*
            }
        }
    };
}

with_range_fields! {
    /// One range (Go's `allocator.Range`, plus our `exclude`).
    #[derive(Clone, Debug, Default)]
    #[serde(default)]
    pub struct RawRange {}
}

/// A route of the `routes` list (Go's `types.Route`, plus the 1.1.0 fields), its values kept as
/// text for [`super::validate`]. Its schema is [`ROUTE`], the table of [`cni_proto::Route`]: one
/// Go type, two serde views, so no one declaration can write both; the test
/// `schemas_are_their_structs` checks that this struct's keys are that table's.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRoute {
    pub dst: Option<String>,
    pub gw: Option<String>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u32>,
}

with_range_fields! {
    /// The `ipam` object (Go's `allocator.IPAMConfig`, whose embedded `*Range` is the old style).
    /// Its table is 1.1.0's; [`NET_PRE_1_1`] swaps in the older routes.
    #[derive(Clone, Debug, Default)]
    #[serde(default)]
    pub struct RawIpam {
        #[go("routes", Kind::List(&ROUTE))]
        pub routes: Option<Vec<RawRoute>>,
        #[go("dataDir", Kind::Scalar)]
        pub data_dir: Option<String>,
        #[go("resolvConf", Kind::Scalar)]
        pub resolv_conf: Option<String>,
        /// Range sets; a `null` set reads as an empty one, as in Go.
        #[go("ranges", Kind::List(&RANGE_SET))]
        pub ranges: Option<Vec<Option<Vec<RawRange>>>>,
        /// The store backend's own configuration, kept as JSON for the store layer.
        #[go("store", Kind::Whole)]
        pub store: Option<Value>,
    }
}

impl RawIpam {
    /// The old-style range written directly in `ipam`.
    pub fn old_style(&self) -> RawRange {
        RawRange {
            range_start: self.range_start.clone(),
            range_end: self.range_end.clone(),
            subnet: self.subnet.clone(),
            gateway: self.gateway.clone(),
            exclude: self.exclude.clone(),
        }
    }
}

go_struct! {
    /// `runtimeConfig` (capabilities `ips` and `ipRanges`).
    #[derive(Clone, Debug, Default)]
    #[serde(default)]
    pub struct RawRuntimeConfig {
        #[go("ipRanges", Kind::List(&RANGE_SET))]
        pub ip_ranges: Option<Vec<Option<Vec<RawRange>>>>,
        #[go("ips", Kind::List(&WHOLE))]
        pub ips: Option<Vec<Option<String>>>,
    }
}

go_struct! {
    /// `args.cni`.
    #[derive(Clone, Debug, Default)]
    #[serde(default)]
    pub struct RawIpamArgs {
        #[go("ips", Kind::List(&WHOLE))]
        pub ips: Option<Vec<Option<String>>>,
    }
}

go_struct! {
    /// `args`.
    #[derive(Clone, Debug, Default)]
    #[serde(default)]
    pub struct RawArgs {
        #[go("cni", Kind::Struct { fields: RawIpamArgs::GO_FIELDS, nullable: true })]
        pub cni: Option<RawIpamArgs>,
    }
}

go_struct! {
    /// One entry of the GC list.
    #[derive(Clone, Debug, Default)]
    #[serde(default)]
    pub struct RawAttachment {
        #[go("containerID", Kind::Scalar)]
        pub container_id: Option<String>,
        #[go("ifname", Kind::Scalar)]
        pub ifname: Option<String>,
    }
}

go_struct! {
    /// The parts of the network configuration host-local reads (Go's `allocator.Net`). Its
    /// table is 1.1.0's; [`NET_PRE_1_1`] swaps in the older routes.
    #[derive(Clone, Debug, Default)]
    #[serde(default)]
    pub struct RawNet {
        #[go("ipam", Kind::Struct { fields: RawIpam::GO_FIELDS, nullable: true })]
        pub ipam: Option<RawIpam>,
        #[go("runtimeConfig", Kind::Struct { fields: RawRuntimeConfig::GO_FIELDS, nullable: false })]
        pub runtime_config: RawRuntimeConfig,
        #[go("args", Kind::Struct { fields: RawArgs::GO_FIELDS, nullable: true })]
        pub args: Option<RawArgs>,
        #[go("cni.dev/valid-attachments", Kind::List(&ATTACHMENT))]
        pub valid_attachments: Option<Vec<RawAttachment>>,
        #[go("cni.dev/attachments", Kind::List(&ATTACHMENT))]
        pub attachments: Option<Vec<RawAttachment>>,
    }
}

static RANGE: Kind = Kind::Struct {
    fields: RawRange::GO_FIELDS,
    nullable: false,
};
static RANGE_SET: Kind = Kind::List(&RANGE);
static ATTACHMENT: Kind = Kind::Struct {
    fields: RawAttachment::GO_FIELDS,
    nullable: false,
};

/// [`RawIpam`]'s table with the routes of a version below 1.1.0 (only `dst` and `gw`).
static IPAM_FIELDS_PRE_1_1: [Field; RawIpam::GO_FIELDS.len()] =
    gojson::with_kind(RawIpam::GO_FIELDS, "routes", Kind::List(&ROUTE_PRE_1_1));
/// [`RawNet`]'s table around that `ipam`.
static NET_FIELDS_PRE_1_1: [Field; RawNet::GO_FIELDS.len()] = gojson::with_kind(
    RawNet::GO_FIELDS,
    "ipam",
    Kind::Struct {
        fields: &IPAM_FIELDS_PRE_1_1,
        nullable: true,
    },
);

/// The schema of a whole network configuration.
pub static NET: Kind = Kind::Struct {
    fields: RawNet::GO_FIELDS,
    nullable: false,
};

/// The schema of a whole network configuration below 1.1.0, whose routes are only `dst` and
/// `gw`.
pub static NET_PRE_1_1: Kind = Kind::Struct {
    fields: &NET_FIELDS_PRE_1_1,
    nullable: false,
};

#[cfg(test)]
mod tests {
    use super::*;
    use cni_proto::gojson::{fields_at, fold_eq, schema_drift, serde_keys};
    use serde::de::DeserializeOwned;

    fn keys(t: &[Field]) -> Vec<&'static str> {
        t.iter().map(|f| f.name).collect()
    }

    /// Every table the configuration's schema reaches is the one of the struct serde decodes
    /// there, with the same keys, in both versions' schemas: go_struct! writes each table with
    /// its struct, this checks the wiring between them and RawRoute, which shares cni-proto's
    /// route table.
    #[test]
    fn schemas_are_their_structs() {
        fn check<T: DeserializeOwned>(root: &Kind, path: &[&str]) {
            let table = fields_at(root, path).unwrap_or_else(|| panic!("{path:?}"));
            assert_eq!(schema_drift::<T>(table), None, "{path:?}");
        }
        for net in [&NET, &NET_PRE_1_1] {
            check::<RawNet>(net, &[]);
            check::<RawIpam>(net, &["ipam"]);
            check::<RawRange>(net, &["ipam", "ranges"]);
            check::<RawRuntimeConfig>(net, &["runtimeConfig"]);
            check::<RawRange>(net, &["runtimeConfig", "ipRanges"]);
            check::<RawArgs>(net, &["args"]);
            check::<RawIpamArgs>(net, &["args", "cni"]);
            check::<RawAttachment>(net, &["cni.dev/valid-attachments"]);
            check::<RawAttachment>(net, &["cni.dev/attachments"]);
        }
        check::<RawRoute>(&NET, &["ipam", "routes"]);
        // Below 1.1.0 the same struct decodes a route whose newer keys the table leaves out.
        let old = keys(fields_at(&NET_PRE_1_1, &["ipam", "routes"]).unwrap());
        assert_eq!(old, ["dst", "gw"]);
        let all = serde_keys::<RawRoute>().unwrap();
        assert!(old.iter().all(|k| all.contains(k)), "{old:?} {all:?}");
    }

    /// The range's fields are RawIpam's first ones, the old-style range, with the same kinds.
    #[test]
    fn ipam_holds_the_range_fields() {
        let n = RawRange::GO_FIELDS.len();
        let shown = |t: &[Field]| format!("{t:?}");
        assert_eq!(shown(&RawIpam::GO_FIELDS[..n]), shown(RawRange::GO_FIELDS));
        assert_eq!(
            keys(RawRange::GO_FIELDS),
            ["rangeStart", "rangeEnd", "subnet", "gateway", "exclude"]
        );
    }

    /// The pre-1.1 schema is the 1.1.0 one but for the routes' table.
    #[test]
    fn pre_1_1_differs_only_in_routes() {
        let (new, old) = (
            fields_at(&NET, &[]).unwrap(),
            fields_at(&NET_PRE_1_1, &[]).unwrap(),
        );
        assert_eq!(keys(new), keys(old));
        let (new, old) = (
            fields_at(&NET, &["ipam"]).unwrap(),
            fields_at(&NET_PRE_1_1, &["ipam"]).unwrap(),
        );
        for (a, b) in new.iter().zip(old) {
            assert_eq!(a.name, b.name);
            if a.name != "routes" {
                assert_eq!(format!("{a:?}"), format!("{b:?}"));
            }
        }
    }

    /// No two fields of a table fold together, so a key names at most one field whatever the
    /// table's order (Go's tie-break): declaring `exclude` with the range's fields moved it in
    /// `ipam`'s table without changing what any key decodes into.
    #[test]
    fn no_two_keys_of_a_table_fold_together() {
        fn walk(kind: &Kind, path: &str) {
            match kind {
                Kind::List(e) | Kind::Map(e) => walk(e, path),
                Kind::Struct { fields, .. } | Kind::Record(fields) => {
                    for (i, a) in fields.iter().enumerate() {
                        for b in &fields[i + 1..] {
                            assert!(!fold_eq(a.name, b.name), "{path}: {} {}", a.name, b.name);
                        }
                        walk(&a.kind, &format!("{path}.{}", a.name));
                    }
                }
                Kind::Scalar | Kind::Whole => {}
            }
        }
        walk(&NET, "");
        walk(&NET_PRE_1_1, "");
    }
}
