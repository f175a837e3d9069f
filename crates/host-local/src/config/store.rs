//! The `ipam.store` object: which store keeps the network's reservations, configured how.
//!
//! ```json
//! absent, null, or {"type": "disk"}: the disk store in `dataDir`
//! {"type": "etcd", "endpoints": ["https://etcd-1:2379"], "prefix": "/cni/ipam",
//!  "timeout": "5s", "node": "worker-3", "tls": {"ca": "ca.pem", "cert": "c.pem", "key": "k.pem"},
//!  "auth": {"username": "cni", "passwordFile": "/etc/cni/etcd/password"}}
//! ```
//!
//! The password is never in the configuration itself, only the path of a
//! file holding it (read, and its permissions checked, when the client is
//! created).
//!
//! Decoded under Go's rules like the rest of the `ipam` section ([`cni_proto::gojson`]: a key
//! matches its field case-insensitively when no exact match exists, the last of repeated keys
//! wins, `null` is the zero value), except that a key naming no field is refused: these
//! objects are ours, and a misspelt `endpoints` must not silently become the default. Then
//! validated as a separate pass; every error is code 7 naming `ipam.store.<key>`.
//!
//! This file is the one place a store key is declared, decoded and validated: a new key
//! touches it alone (plus the backend that uses the value).

use std::path::PathBuf;
use std::time::Duration;

use cni_proto::go_struct;
use cni_proto::gojson::{self, find_field, Doc, Field, Kind};
use serde_json::Value;

use crate::error::{Error, Result};

/// Where the keys live when `prefix` is not given.
pub const DEFAULT_PREFIX: &str = "/cni/ipam";
/// Bound of one invocation's etcd work when `timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest `timeout` accepted: a plugin call must not hang a runtime for long.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_ENDPOINTS: usize = 64;

/// Which store keeps a network's reservations, with its validated options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    /// The reference's layout under `<data_dir>/<network>`.
    Disk { data_dir: PathBuf },
    /// One pool shared by the nodes of a cluster, kept in etcd.
    Etcd(EtcdConfig),
}

impl StoreConfig {
    /// The `type` as written in the configuration.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreConfig::Disk { .. } => "disk",
            StoreConfig::Etcd(_) => "etcd",
        }
    }
}

/// Client certificate and trust anchor files (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle the servers' certificates must chain to.
    pub ca: PathBuf,
    /// Client certificate and key, presented when both are given.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Username/password authentication against etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    pub username: String,
    /// A file holding the password (one line); readable by its owner only.
    pub password_file: PathBuf,
}

/// The validated etcd store configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    /// Key prefix without a trailing `/`.
    pub prefix: String,
    /// Bound of everything one store object does against etcd.
    pub timeout: Duration,
    /// This node's name, recorded in each reservation it makes (GC scope).
    pub node: String,
    pub tls: Option<TlsFiles>,
    pub auth: Option<AuthConfig>,
    /// Addresses in each node's block (a power of two, [`MIN_BLOCK`] to
    /// [`MAX_BLOCK`]; the same for both families: 64 is Calico's /26 and /122).
    pub block_size: u32,
}

/// The default `blockSize`: Calico's /26 (IPv4) and /122 (IPv6).
pub const DEFAULT_BLOCK: u32 = 64;
pub const MIN_BLOCK: u32 = 4;
/// A block's addresses are read in one range read of at most this many keys.
pub const MAX_BLOCK: u32 = 4096;

static SCALAR: Kind = Kind::Scalar;

go_struct! {
    /// The `tls` object as written.
    #[derive(Debug, Default)]
    #[serde(default)]
    struct RawTls {
        #[go("ca", Kind::Scalar)]
        ca: Option<String>,
        #[go("cert", Kind::Scalar)]
        cert: Option<String>,
        #[go("key", Kind::Scalar)]
        key: Option<String>,
    }
}

go_struct! {
    /// The `auth` object as written.
    #[derive(Debug, Default)]
    #[serde(default)]
    struct RawAuth {
        #[go("username", Kind::Scalar)]
        username: Option<String>,
        #[go("passwordFile", Kind::Scalar)]
        password_file: Option<String>,
    }
}

go_struct! {
    /// The `store` object as written, typed, before validation.
    #[derive(Debug, Default)]
    #[serde(default)]
    struct RawStore {
        #[go("type", Kind::Scalar)]
        kind: Option<String>,
        #[go("endpoints", Kind::List(&SCALAR))]
        endpoints: Option<Vec<String>>,
        #[go("prefix", Kind::Scalar)]
        prefix: Option<String>,
        #[go("timeout", Kind::Scalar)]
        timeout: Option<String>,
        #[go("node", Kind::Scalar)]
        node: Option<String>,
        #[go("tls", Kind::Struct { fields: RawTls::GO_FIELDS, nullable: true })]
        tls: Option<RawTls>,
        #[go("auth", Kind::Struct { fields: RawAuth::GO_FIELDS, nullable: true })]
        auth: Option<RawAuth>,
        #[go("blockSize", Kind::Scalar)]
        block_size: Option<u64>,
    }
}

static STORE: Kind = Kind::Struct {
    fields: RawStore::GO_FIELDS,
    nullable: true,
};

/// What a key's value must look like, for type errors.
fn expected(key: &str) -> &'static str {
    match key {
        "type" | "prefix" | "node" => "expected a string",
        "endpoints" => "expected a list of URLs",
        "timeout" => "expected a duration like \"5s\"",
        "blockSize" => {
            "expected a number of addresses (a power of two, 4 to 4096; 64 is Calico's /26)"
        }
        "tls" => "expected an object {ca, cert, key}",
        k if k.starts_with("tls.") => "expected a file path",
        "auth" => "expected an object {username, passwordFile}",
        k if k.starts_with("auth.") => "expected a string",
        _ => "invalid value",
    }
}

fn invalid(key: &str, value: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::config(format!("ipam.store.{key}"), value, reason)
}

/// The first key of `obj` that names none of `fields` (Go's case folding applied).
fn unknown_key<'a>(obj: &'a [(String, Doc)], fields: &[Field]) -> Option<&'a (String, Doc)> {
    obj.iter().find(|(k, _)| find_field(fields, k).is_none())
}

fn known(fields: &[Field]) -> String {
    fields.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
}

impl StoreConfig {
    /// Decodes and validates the `store` object (`None` or `null`: the disk store). `data_dir`
    /// is the validated `ipam.dataDir`; `hostname` supplies the etcd store's default `node`.
    pub fn from_value(
        store: Option<&Value>,
        data_dir: PathBuf,
        hostname: &dyn Fn() -> Option<String>,
    ) -> Result<StoreConfig> {
        let Some(v) = store.filter(|v| !v.is_null()) else {
            return Ok(StoreConfig::Disk { data_dir });
        };
        let doc = Doc::from(v);
        let Doc::Object(obj) = &doc else {
            return Err(Error::config(
                "ipam.store",
                v.to_string(),
                "expected an object with a \"type\"",
            ));
        };
        let raw: RawStore = gojson::decode(&doc, &STORE, "").map_err(|e| {
            let value = e
                .path
                .split(['.', '['])
                .try_fold(v, |v, seg| v.get(seg.trim_end_matches(']')));
            // Nothing under `auth` is echoed: it may be a misplaced password.
            let shown = match e.path.starts_with("auth") {
                true => String::new(),
                false => value.map(Value::to_string).unwrap_or_default(),
            };
            invalid(
                &e.path,
                shown,
                expected(e.path.split('[').next().unwrap_or_default()),
            )
        })?;
        match raw.kind.as_deref() {
            None => Err(invalid("type", "", "missing")),
            Some("disk") => {
                if let Some((k, x)) = obj.iter().find(|(k, _)| !gojson::fold_eq("type", k)) {
                    return Err(invalid(
                        k,
                        x.to_value().to_string(),
                        "unknown key for the disk store",
                    ));
                }
                Ok(StoreConfig::Disk { data_dir })
            }
            Some("etcd") => {
                if let Some((k, x)) = unknown_key(obj, RawStore::GO_FIELDS) {
                    return Err(invalid(
                        k,
                        x.to_value().to_string(),
                        format!(
                            "unknown key for the etcd store (known: {})",
                            known(RawStore::GO_FIELDS)
                        ),
                    ));
                }
                if let Some(Doc::Object(t)) = doc.field("tls", Kind::Whole) {
                    if let Some((k, x)) = unknown_key(t, RawTls::GO_FIELDS) {
                        return Err(invalid(
                            &format!("tls.{k}"),
                            x.to_value().to_string(),
                            format!("unknown key (known: {})", known(RawTls::GO_FIELDS)),
                        ));
                    }
                }
                if let Some(Doc::Object(a)) = doc.field("auth", Kind::Whole) {
                    if let Some((k, _)) = unknown_key(a, RawAuth::GO_FIELDS) {
                        let reason = if k.eq_ignore_ascii_case("password") {
                            "the password is never written in the configuration: put it in a file readable by root only and name that file in ipam.store.auth.passwordFile".to_string()
                        } else {
                            format!("unknown key (known: {})", known(RawAuth::GO_FIELDS))
                        };
                        // The value is not echoed: it may be a password.
                        return Err(invalid(&format!("auth.{k}"), "", reason));
                    }
                }
                raw.validate_etcd(hostname).map(StoreConfig::Etcd)
            }
            Some(other) => Err(invalid(
                "type",
                other,
                "unknown store type (known: disk, etcd)",
            )),
        }
    }
}

impl RawStore {
    fn validate_etcd(self, hostname: &dyn Fn() -> Option<String>) -> Result<EtcdConfig> {
        let tls = match self.tls {
            Some(t) => Some(tls_files(t)?),
            None => None,
        };
        let auth = match self.auth {
            Some(a) => Some(auth_config(a)?),
            None => None,
        };
        let endpoints = self
            .endpoints
            .ok_or_else(|| invalid("endpoints", "", "missing: the etcd client URLs"))?;
        if endpoints.is_empty() || endpoints.len() > MAX_ENDPOINTS {
            return Err(invalid(
                "endpoints",
                "[]",
                format!("expected 1 to {MAX_ENDPOINTS} URLs"),
            ));
        }
        for (i, e) in endpoints.iter().enumerate() {
            endpoint(&format!("endpoints[{i}]"), e, tls.is_some())?;
        }
        let prefix = self.prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_string());
        let prefix_ok = prefix.starts_with('/')
            && prefix.len() > 1
            && prefix.len() <= 256
            && !prefix.ends_with('/')
            && !prefix.contains("//")
            && prefix.bytes().all(|b| b.is_ascii_graphic());
        if !prefix_ok {
            return Err(invalid(
                "prefix",
                &prefix,
                "expected a key prefix like /cni/ipam: leading /, no trailing / or empty segment, printable ASCII",
            ));
        }
        let timeout = match &self.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => {
                let d = parse_duration(t).ok_or_else(|| {
                    invalid(
                        "timeout",
                        t,
                        "expected a duration like \"5s\", \"500ms\", \"1m\"",
                    )
                })?;
                if d.is_zero() || d > MAX_TIMEOUT {
                    return Err(invalid("timeout", t, "expected more than 0 and at most 5m"));
                }
                d
            }
        };
        let node = match self.node {
            Some(n) => n,
            None => hostname().ok_or_else(|| {
                invalid("node", "", "missing, and the host's name could not be read")
            })?,
        };
        if !valid_node(&node) {
            return Err(invalid(
                "node",
                &node,
                "expected 1 to 253 characters of letters, digits, '.', '-', '_'",
            ));
        }
        let block_size = match self.block_size {
            None => DEFAULT_BLOCK,
            Some(b) => match u32::try_from(b) {
                Ok(b) if b.is_power_of_two() && (MIN_BLOCK..=MAX_BLOCK).contains(&b) => b,
                _ => {
                    return Err(invalid(
                        "blockSize",
                        b.to_string(),
                        format!("expected the number of addresses in a node's block: a power of two from {MIN_BLOCK} to {MAX_BLOCK} (64 is Calico's /26 and /122)"),
                    ))
                }
            },
        };
        Ok(EtcdConfig {
            endpoints,
            prefix,
            timeout,
            node,
            tls,
            auth,
            block_size,
        })
    }
}

fn auth_config(a: RawAuth) -> Result<AuthConfig> {
    let text = |k: &str, v: Option<String>, what: &str| -> Result<String> {
        v.ok_or_else(|| invalid(&format!("auth.{k}"), "", format!("missing: {what}")))
    };
    let username = text("username", a.username, "the etcd user")?;
    if username.is_empty()
        || username.len() > 256
        || username
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(invalid(
            "auth.username",
            &username,
            "expected 1 to 256 characters, no spaces or control characters",
        ));
    }
    let file = text(
        "passwordFile",
        a.password_file,
        "the path of the file holding the password",
    )?;
    if !file.starts_with('/') || file.contains('\0') {
        return Err(invalid(
            "auth.passwordFile",
            &file,
            "expected an absolute file path",
        ));
    }
    Ok(AuthConfig {
        username,
        password_file: PathBuf::from(file),
    })
}

/// One `endpoints` entry: `http://HOST:PORT`, or `https://` when TLS is configured.
fn endpoint(key: &str, e: &str, tls: bool) -> Result<()> {
    let rest = if let Some(r) = e.strip_prefix("https://") {
        if !tls {
            return Err(invalid(key, e, "an https endpoint needs ipam.store.tls.ca"));
        }
        r
    } else if let Some(r) = e.strip_prefix("http://") {
        if tls {
            return Err(invalid(key, e, "ipam.store.tls is given: use https://"));
        }
        r
    } else {
        return Err(invalid(
            key,
            e,
            "expected http://HOST:PORT or https://HOST:PORT",
        ));
    };
    let host_port = rest.strip_suffix('/').unwrap_or(rest);
    let ok = !host_port.is_empty()
        && host_port
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
        && host_port
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
    if !ok {
        return Err(invalid(key, e, "expected http(s)://HOST:PORT"));
    }
    Ok(())
}

fn tls_files(t: RawTls) -> Result<TlsFiles> {
    let path = |k: &str, v: Option<String>| -> Result<Option<PathBuf>> {
        match v {
            None => Ok(None),
            Some(s) if s.is_empty() || s.contains('\0') => {
                Err(invalid(&format!("tls.{k}"), s, "expected a file path"))
            }
            Some(s) => Ok(Some(PathBuf::from(s))),
        }
    };
    let (ca, cert, key) = (
        path("ca", t.ca)?,
        path("cert", t.cert)?,
        path("key", t.key)?,
    );
    let ca = ca.ok_or_else(|| invalid("tls.ca", "", "missing: the CA bundle (PEM)"))?;
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) => return Err(invalid("tls.key", "", "missing while tls.cert is given")),
        (None, Some(_)) => return Err(invalid("tls.cert", "", "missing while tls.key is given")),
    };
    Ok(TlsFiles { ca, identity })
}

fn valid_node(n: &str) -> bool {
    (1..=253).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A Go-style duration: one or more `<decimal><unit>` with units ns, us,
/// µs, ms, s, m, h (e.g. "5s", "1.5s", "1m30s"). None when malformed or
/// beyond a day.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&i| i > 0)?;
        let num: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += num * scale;
    }
    (total <= 86_400.0).then(|| Duration::from_secs_f64(total))
}

/// The host's name (uname's nodename), the default `node`.
pub fn host_name() -> Option<String> {
    let uts = rustix::system::uname();
    let name = uts.nodename().to_str().ok()?.trim().to_string();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<EtcdConfig> {
        match StoreConfig::from_value(Some(&v), "/d".into(), &|| Some("host-a".into()))? {
            StoreConfig::Etcd(c) => Ok(c),
            other => panic!("not etcd: {other:?}"),
        }
    }

    fn field_of(e: Error) -> String {
        assert_eq!(e.code(), cni_proto::code::INVALID_CONFIG, "{e}");
        match e {
            Error::Config { field, .. } => field,
            other => panic!("not a config error: {other}"),
        }
    }

    #[test]
    fn absent_null_and_disk_choose_the_disk_store() {
        let host = || None;
        for v in [None, Some(Value::Null), Some(json!({"type": "disk"}))] {
            let c = StoreConfig::from_value(v.as_ref(), "/d".into(), &host).unwrap();
            assert_eq!(
                c,
                StoreConfig::Disk {
                    data_dir: "/d".into()
                }
            );
        }
    }

    #[test]
    fn store_errors_name_their_key() {
        for (store, field) in [
            (json!({"type": "nosuch"}), "ipam.store.type"),
            (json!({}), "ipam.store.type"),
            (json!({"type": 3}), "ipam.store.type"),
            (json!("disk"), "ipam.store"),
            (json!({"type": "disk", "path": "/x"}), "ipam.store.path"),
        ] {
            let e = StoreConfig::from_value(Some(&store), "/d".into(), &|| None).unwrap_err();
            assert_eq!(field_of(e), field, "{store}");
        }
    }

    #[test]
    fn keys_follow_go_rules() {
        // Case folding when no exact key, the last of repeated keys, null as the zero value.
        let c = parse(
            json!({"Type": "etcd", "ENDPOINTS": ["http://127.0.0.1:2379"],
            "Node": "a", "node": "b", "prefix": null, "Tls": null}),
        )
        .unwrap();
        assert_eq!(c.node, "b");
        assert_eq!(c.prefix, DEFAULT_PREFIX);
        assert_eq!(c.tls, None);
        let c = parse(json!({"type": "etcd", "endpoints": ["https://e:1"],
            "TLS": {"CA": "/ca.pem"}}))
        .unwrap();
        assert_eq!(c.tls.unwrap().ca, PathBuf::from("/ca.pem"));
        let e = StoreConfig::from_value(
            Some(&json!({"TYPE": "disk", "dataDir": "/x"})),
            "/d".into(),
            &|| None,
        )
        .unwrap_err();
        assert_eq!(field_of(e), "ipam.store.dataDir");
    }

    #[test]
    fn defaults_apply() {
        let c = parse(json!({"type": "etcd", "endpoints": ["http://127.0.0.1:2379"]})).unwrap();
        assert_eq!(c.prefix, "/cni/ipam");
        assert_eq!(c.block_size, DEFAULT_BLOCK);
        for (b, want) in [(json!(4), 4), (json!(4096), 4096), (json!(null), 64)] {
            let c = parse(json!({"type": "etcd", "endpoints": ["http://a:1"], "blocksize": b}))
                .unwrap();
            assert_eq!(c.block_size, want, "blockSize {b}");
        }
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.node, "host-a");
        assert_eq!(c.tls, None);
        assert_eq!(c.auth, None);
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            json!({"type": "etcd", "endpoints": ["https://e1:2379", "https://[::1]:2379/"],
            "prefix": "/x/y", "timeout": "1m30s", "node": "worker-3",
            "tls": {"ca": "/ca.pem", "cert": "/c.pem", "key": "/k.pem"},
            "auth": {"username": "cni", "passwordFile": "/etc/cni/etcd/pw"}}),
        )
        .unwrap();
        assert_eq!(c.endpoints.len(), 2);
        assert_eq!(c.prefix, "/x/y");
        assert_eq!(c.timeout, Duration::from_secs(90));
        assert_eq!(c.node, "worker-3");
        let tls = c.tls.unwrap();
        assert_eq!(tls.ca, PathBuf::from("/ca.pem"));
        assert_eq!(
            tls.identity,
            Some((PathBuf::from("/c.pem"), PathBuf::from("/k.pem")))
        );
        assert_eq!(
            c.auth,
            Some(AuthConfig {
                username: "cni".into(),
                password_file: PathBuf::from("/etc/cni/etcd/pw")
            })
        );
    }

    #[test]
    fn invalid_values_name_their_key() {
        let base = json!({"type": "etcd", "endpoints": ["http://127.0.0.1:2379"]});
        let cases = [
            (json!({"endpoints": null}), "ipam.store.endpoints"),
            (json!({"endpoints": []}), "ipam.store.endpoints"),
            (json!({"endpoints": "http://a:1"}), "ipam.store.endpoints"),
            (json!({"endpoints": ["a:1"]}), "ipam.store.endpoints[0]"),
            (
                json!({"endpoints": ["http://a:1", "http://b"]}),
                "ipam.store.endpoints[1]",
            ),
            (
                json!({"endpoints": ["https://a:1"]}),
                "ipam.store.endpoints[0]",
            ),
            (json!({"tls": {"ca": "/ca"}}), "ipam.store.endpoints[0]"),
            (json!({"prefix": "cni"}), "ipam.store.prefix"),
            (json!({"prefix": "/cni/"}), "ipam.store.prefix"),
            (json!({"prefix": "/a b"}), "ipam.store.prefix"),
            (json!({"prefix": 3}), "ipam.store.prefix"),
            (json!({"timeout": "5"}), "ipam.store.timeout"),
            (json!({"timeout": "0s"}), "ipam.store.timeout"),
            (json!({"timeout": "10m"}), "ipam.store.timeout"),
            (json!({"timeout": 5}), "ipam.store.timeout"),
            (json!({"node": ""}), "ipam.store.node"),
            (json!({"node": "a/b"}), "ipam.store.node"),
            (json!({"blockSize": 26}), "ipam.store.blockSize"),
            (json!({"blockSize": 0}), "ipam.store.blockSize"),
            (json!({"blockSize": 2}), "ipam.store.blockSize"),
            (json!({"blockSize": 8192}), "ipam.store.blockSize"),
            (json!({"blockSize": "64"}), "ipam.store.blockSize"),
            (json!({"blockSize": -64}), "ipam.store.blockSize"),
            (json!({"tls": "yes"}), "ipam.store.tls"),
            (
                json!({"tls": {"cert": "/c", "key": "/k"}}),
                "ipam.store.tls.ca",
            ),
            (
                json!({"tls": {"ca": "/ca", "cert": "/c"}}),
                "ipam.store.tls.key",
            ),
            (json!({"tls": {"ca": 1}}), "ipam.store.tls.ca"),
            (
                json!({"tls": {"ca": "/ca", "pass": "x"}}),
                "ipam.store.tls.pass",
            ),
            (json!({"user": "root"}), "ipam.store.user"),
            (json!({"auth": "cni"}), "ipam.store.auth"),
            (json!({"auth": {}}), "ipam.store.auth.username"),
            (
                json!({"auth": {"username": "cni"}}),
                "ipam.store.auth.passwordFile",
            ),
            (
                json!({"auth": {"username": "", "passwordFile": "/p"}}),
                "ipam.store.auth.username",
            ),
            (
                json!({"auth": {"username": "a b", "passwordFile": "/p"}}),
                "ipam.store.auth.username",
            ),
            (
                json!({"auth": {"username": "cni", "passwordFile": "pw"}}),
                "ipam.store.auth.passwordFile",
            ),
            (
                json!({"auth": {"username": "cni", "passwordFile": 1}}),
                "ipam.store.auth.passwordFile",
            ),
            (
                json!({"auth": {"username": "cni", "password": "hunter2"}}),
                "ipam.store.auth.password",
            ),
        ];
        for (patch, want) in cases {
            let mut v = base.clone();
            for (k, x) in patch.as_object().unwrap() {
                v[k] = x.clone();
            }
            let e = parse(v.clone())
                .err()
                .unwrap_or_else(|| panic!("{v} accepted"));
            assert_eq!(field_of(e), want, "{v}");
        }
    }

    #[test]
    fn a_password_in_the_configuration_is_refused_without_echoing_it() {
        let v = json!({"type": "etcd", "endpoints": ["http://127.0.0.1:2379"],
            "auth": {"username": "cni", "Password": "hunter2", "passwordFile": "/p"}});
        let e = parse(v).unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("passwordFile"), "{msg}");
        assert_eq!(field_of(e), "ipam.store.auth.Password");
        // A password where a string is expected is not echoed either.
        let v = json!({"type": "etcd", "endpoints": ["http://127.0.0.1:2379"],
            "auth": {"username": ["hunter2"], "passwordFile": "/p"}});
        let msg = parse(v).unwrap_err().to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn node_defaults_to_the_host_name_or_fails_naming_node() {
        let v = json!({"type": "etcd", "endpoints": ["http://127.0.0.1:2379"]});
        let e = StoreConfig::from_value(Some(&v), "/d".into(), &|| None).unwrap_err();
        assert_eq!(field_of(e), "ipam.store.node");
        assert!(host_name().is_some_and(|n| !n.is_empty()));
    }

    #[test]
    fn durations() {
        for (s, ms) in [
            ("5s", 5000),
            ("500ms", 500),
            ("1.5s", 1500),
            ("1m30s", 90_000),
            ("2h", 7_200_000),
        ] {
            assert_eq!(parse_duration(s), Some(Duration::from_millis(ms)), "{s}");
        }
        for s in ["", "5", "s", "5x", "-1s", "1..2s", "25h"] {
            assert_eq!(parse_duration(s), None, "{s}");
        }
    }
}
