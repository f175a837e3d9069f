//! The configuration as the reference's Go types decode it: typed serde structs for the parts of
//! a network configuration host-local reads, and the [`Kind`] schemas telling
//! [`cni_proto::gojson`] how Go's encoding/json fills them (key case, duplicates, `null`).
//! Values stay text here; [`super::validate`] parses and checks them, naming the field path.

use cni_proto::gojson::{Field, Kind};
use serde::Deserialize;
use serde_json::Value;

/// One range (Go's `allocator.Range`, plus our `exclude`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RawRange {
    pub range_start: Option<String>,
    pub range_end: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub exclude: Option<Vec<String>>,
}

/// A route of the `routes` list (Go's `types.Route`, plus the 1.1.0 fields).
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

/// The `ipam` object (Go's `allocator.IPAMConfig`, whose embedded `*Range` is the old style).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RawIpam {
    // The embedded old-style range (serde's flatten would lose the error paths).
    pub range_start: Option<String>,
    pub range_end: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub exclude: Option<Vec<String>>,
    pub routes: Option<Vec<RawRoute>>,
    pub data_dir: Option<String>,
    pub resolv_conf: Option<String>,
    /// Range sets; a `null` set reads as an empty one, as in Go.
    pub ranges: Option<Vec<Option<Vec<RawRange>>>>,
    /// The store backend's own configuration, kept as JSON for the store layer.
    pub store: Option<Value>,
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

/// `runtimeConfig` (capabilities `ips` and `ipRanges`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RawRuntimeConfig {
    pub ip_ranges: Option<Vec<Option<Vec<RawRange>>>>,
    pub ips: Option<Vec<Option<String>>>,
}

/// `args.cni`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawIpamArgs {
    pub ips: Option<Vec<Option<String>>>,
}

/// `args`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawArgs {
    pub cni: Option<RawIpamArgs>,
}

/// One entry of the GC list.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RawAttachment {
    #[serde(rename = "containerID")]
    pub container_id: Option<String>,
    pub ifname: Option<String>,
}

/// The parts of the network configuration host-local reads (Go's `allocator.Net`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RawNet {
    pub ipam: Option<RawIpam>,
    pub runtime_config: RawRuntimeConfig,
    pub args: Option<RawArgs>,
    #[serde(rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<RawAttachment>>,
    #[serde(rename = "cni.dev/attachments")]
    pub attachments: Option<Vec<RawAttachment>>,
}

const fn f(name: &'static str, kind: Kind) -> Field {
    Field { name, kind }
}

static SCALAR: Kind = Kind::Scalar;
static WHOLE: Kind = Kind::Whole;

/// net.IP and types.IPNet decode whole; `null` resets them.
static RANGE_FIELDS: [Field; 5] = [
    f("rangeStart", Kind::Whole),
    f("rangeEnd", Kind::Whole),
    f("subnet", Kind::Whole),
    f("gateway", Kind::Whole),
    f("exclude", Kind::List(&SCALAR)),
];
static RANGE: Kind = Kind::Struct {
    fields: &RANGE_FIELDS,
    nullable: false,
};
static RANGE_SET: Kind = Kind::List(&RANGE);

/// types.Route has its own UnmarshalJSON: a repeated route replaces, it does not merge.
static ROUTE_FIELDS: [Field; 7] = [
    f("dst", Kind::Whole),
    f("gw", Kind::Whole),
    f("mtu", Kind::Scalar),
    f("advmss", Kind::Scalar),
    f("priority", Kind::Scalar),
    f("table", Kind::Scalar),
    f("scope", Kind::Scalar),
];
static ROUTE: Kind = Kind::Record(&ROUTE_FIELDS);
/// Below 1.1.0 a route is only `dst` and `gw` (the reference's types.Route): the 1.1.0 fields
/// are unknown keys, ignored whatever they hold.
static ROUTE_PRE_1_1: Kind = Kind::Record(&ROUTE_FIELDS_PRE_1_1);
static ROUTE_FIELDS_PRE_1_1: [Field; 2] = [f("dst", Kind::Whole), f("gw", Kind::Whole)];

/// IPAMConfig: the embedded Range's fields come first, as Go orders them.
static IPAM_FIELDS: [Field; 10] = [
    f("rangeStart", Kind::Whole),
    f("rangeEnd", Kind::Whole),
    f("subnet", Kind::Whole),
    f("gateway", Kind::Whole),
    f("routes", Kind::List(&ROUTE)),
    f("dataDir", Kind::Scalar),
    f("resolvConf", Kind::Scalar),
    f("ranges", Kind::List(&RANGE_SET)),
    f("exclude", Kind::List(&SCALAR)),
    f("store", Kind::Whole),
];

/// IPAMConfig below 1.1.0.
static IPAM_FIELDS_PRE_1_1: [Field; 10] = [
    f("rangeStart", Kind::Whole),
    f("rangeEnd", Kind::Whole),
    f("subnet", Kind::Whole),
    f("gateway", Kind::Whole),
    f("routes", Kind::List(&ROUTE_PRE_1_1)),
    f("dataDir", Kind::Scalar),
    f("resolvConf", Kind::Scalar),
    f("ranges", Kind::List(&RANGE_SET)),
    f("exclude", Kind::List(&SCALAR)),
    f("store", Kind::Whole),
];

static RUNTIME_FIELDS: [Field; 2] = [
    f("ipRanges", Kind::List(&RANGE_SET)),
    f("ips", Kind::List(&WHOLE)),
];
static IPAM_ARGS_FIELDS: [Field; 1] = [f("ips", Kind::List(&WHOLE))];
static ARGS_FIELDS: [Field; 1] = [f(
    "cni",
    Kind::Struct {
        fields: &IPAM_ARGS_FIELDS,
        nullable: true,
    },
)];
static ATTACHMENT_FIELDS: [Field; 2] = [f("containerID", Kind::Scalar), f("ifname", Kind::Scalar)];
static ATTACHMENT: Kind = Kind::Struct {
    fields: &ATTACHMENT_FIELDS,
    nullable: false,
};

static NET_FIELDS: [Field; 5] = [
    f(
        "ipam",
        Kind::Struct {
            fields: &IPAM_FIELDS,
            nullable: true,
        },
    ),
    f(
        "runtimeConfig",
        Kind::Struct {
            fields: &RUNTIME_FIELDS,
            nullable: false,
        },
    ),
    f(
        "args",
        Kind::Struct {
            fields: &ARGS_FIELDS,
            nullable: true,
        },
    ),
    f("cni.dev/valid-attachments", Kind::List(&ATTACHMENT)),
    f("cni.dev/attachments", Kind::List(&ATTACHMENT)),
];

/// The schema of a whole network configuration.
pub static NET: Kind = Kind::Struct {
    fields: &NET_FIELDS,
    nullable: false,
};

static NET_FIELDS_PRE_1_1: [Field; 5] = [
    f(
        "ipam",
        Kind::Struct {
            fields: &IPAM_FIELDS_PRE_1_1,
            nullable: true,
        },
    ),
    f(
        "runtimeConfig",
        Kind::Struct {
            fields: &RUNTIME_FIELDS,
            nullable: false,
        },
    ),
    f(
        "args",
        Kind::Struct {
            fields: &ARGS_FIELDS,
            nullable: true,
        },
    ),
    f("cni.dev/valid-attachments", Kind::List(&ATTACHMENT)),
    f("cni.dev/attachments", Kind::List(&ATTACHMENT)),
];

/// The schema of a whole network configuration below 1.1.0.
pub static NET_PRE_1_1: Kind = Kind::Struct {
    fields: &NET_FIELDS_PRE_1_1,
    nullable: false,
};
