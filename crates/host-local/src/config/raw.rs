//! The configuration as the reference's Go types decode it: typed serde structs for the parts of
//! a network configuration host-local reads, and the [`Kind`] schemas telling
//! [`cni_proto::gojson`] how Go's encoding/json fills them (key case, duplicates, `null`).
//! Values stay text here; [`super::validate`] parses and checks them, naming the field path.

use cni_proto::gojson::{field as f, Field, Kind};
use cni_proto::result::{ROUTE, ROUTE_PRE_1_1};
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

/// IPAMConfig, whose `routes` are `routes`' kind: the embedded Range's fields come first, as Go
/// orders them.
const fn ipam_fields(routes: &'static Kind) -> [Field; 10] {
    [
        f("rangeStart", Kind::Whole),
        f("rangeEnd", Kind::Whole),
        f("subnet", Kind::Whole),
        f("gateway", Kind::Whole),
        f("routes", Kind::List(routes)),
        f("dataDir", Kind::Scalar),
        f("resolvConf", Kind::Scalar),
        f("ranges", Kind::List(&RANGE_SET)),
        f("exclude", Kind::List(&SCALAR)),
        f("store", Kind::Whole),
    ]
}
static IPAM_FIELDS: [Field; 10] = ipam_fields(&ROUTE);
static IPAM_FIELDS_PRE_1_1: [Field; 10] = ipam_fields(&ROUTE_PRE_1_1);

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

/// allocator.Net around the IPAMConfig `ipam`.
const fn net_fields(ipam: &'static [Field]) -> [Field; 5] {
    [
        f(
            "ipam",
            Kind::Struct {
                fields: ipam,
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
    ]
}
static NET_FIELDS: [Field; 5] = net_fields(&IPAM_FIELDS);
static NET_FIELDS_PRE_1_1: [Field; 5] = net_fields(&IPAM_FIELDS_PRE_1_1);

/// The schema of a whole network configuration.
pub static NET: Kind = Kind::Struct {
    fields: &NET_FIELDS,
    nullable: false,
};

/// The schema of a whole network configuration below 1.1.0, whose routes are only `dst` and
/// `gw`.
pub static NET_PRE_1_1: Kind = Kind::Struct {
    fields: &NET_FIELDS_PRE_1_1,
    nullable: false,
};
