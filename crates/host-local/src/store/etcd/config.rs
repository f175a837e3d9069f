//! The `ipam.store` object of the etcd store:
//!
//! ```json
//! {"type": "etcd", "endpoints": ["https://etcd-1:2379"], "prefix": "/cni/ipam",
//!  "timeout": "5s", "node": "worker-3", "tls": {"ca": "ca.pem", "cert": "c.pem", "key": "k.pem"},
//!  "auth": {"username": "cni", "passwordFile": "/etc/cni/etcd/password"}}
//! ```
//!
//! The password is never in the configuration itself, only the path of a
//! file holding it (read, and its permissions checked, when the client is
//! created).
//!
//! Decoded key by key (each one typed through serde), then validated as a
//! separate pass; every error is code 7 naming `ipam.store.<key>`.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::Error;

/// Where the keys live when `prefix` is not given.
pub const DEFAULT_PREFIX: &str = "/cni/ipam";
/// Bound of one invocation's etcd work when `timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest `timeout` accepted: a plugin call must not hang a runtime for long.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_ENDPOINTS: usize = 64;

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
}

/// The keys as written, typed, before validation.
#[derive(Debug, Default)]
struct Raw {
    endpoints: Option<Vec<String>>,
    prefix: Option<String>,
    timeout: Option<String>,
    node: Option<String>,
    tls: Option<Map<String, Value>>,
    auth: Option<Map<String, Value>>,
}

fn field<T: DeserializeOwned>(key: &str, v: &Value, expected: &str) -> Result<T, Error> {
    serde_json::from_value(v.clone())
        .map_err(|_| Error::config(format!("ipam.store.{key}"), v.to_string(), expected))
}

fn invalid(key: &str, value: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::config(format!("ipam.store.{key}"), value, reason)
}

impl EtcdConfig {
    /// Decodes and validates the `store` object (its `type` is "etcd").
    /// `hostname` supplies the default `node`.
    pub fn from_object(
        obj: &Map<String, Value>,
        hostname: &dyn Fn() -> Option<String>,
    ) -> Result<Self, Error> {
        let mut raw = Raw::default();
        for (k, v) in obj {
            if v.is_null() {
                continue;
            }
            match k.as_str() {
                "type" => {}
                "endpoints" => raw.endpoints = Some(field(k, v, "expected a list of URLs")?),
                "prefix" => raw.prefix = Some(field(k, v, "expected a string")?),
                "timeout" => raw.timeout = Some(field(k, v, "expected a duration like \"5s\"")?),
                "node" => raw.node = Some(field(k, v, "expected a string")?),
                "tls" => raw.tls = Some(field(k, v, "expected an object {ca, cert, key}")?),
                "auth" => {
                    raw.auth = Some(field(k, v, "expected an object {username, passwordFile}")?)
                }
                _ => {
                    return Err(invalid(
                        k,
                        v.to_string(),
                        "unknown key for the etcd store (known: type, endpoints, prefix, timeout, node, tls, auth)",
                    ))
                }
            }
        }
        raw.validate(hostname)
    }
}

impl Raw {
    fn validate(self, hostname: &dyn Fn() -> Option<String>) -> Result<EtcdConfig, Error> {
        let tls = match &self.tls {
            Some(t) => Some(tls_files(t)?),
            None => None,
        };
        let auth = match &self.auth {
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
            let key = format!("endpoints[{i}]");
            let rest = if let Some(r) = e.strip_prefix("https://") {
                if tls.is_none() {
                    return Err(invalid(
                        &key,
                        e,
                        "an https endpoint needs ipam.store.tls.ca",
                    ));
                }
                r
            } else if let Some(r) = e.strip_prefix("http://") {
                if tls.is_some() {
                    return Err(invalid(&key, e, "ipam.store.tls is given: use https://"));
                }
                r
            } else {
                return Err(invalid(
                    &key,
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
                return Err(invalid(&key, e, "expected http(s)://HOST:PORT"));
            }
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
        Ok(EtcdConfig {
            endpoints,
            prefix,
            timeout,
            node,
            tls,
            auth,
        })
    }
}

fn auth_config(a: &Map<String, Value>) -> Result<AuthConfig, Error> {
    if let Some(k) = a
        .keys()
        .find(|k| !["username", "passwordFile"].contains(&k.as_str()))
    {
        let reason = if k.eq_ignore_ascii_case("password") {
            "the password is never written in the configuration: put it in a file readable by root only and name that file in ipam.store.auth.passwordFile"
        } else {
            "unknown key (known: username, passwordFile)"
        };
        // The value is not echoed: it may be a password.
        return Err(invalid(&format!("auth.{k}"), "", reason));
    }
    let text = |k: &str, what: &str| -> Result<String, Error> {
        let key = format!("auth.{k}");
        match a.get(k).filter(|v| !v.is_null()) {
            None => Err(invalid(&key, "", format!("missing: {what}"))),
            Some(v) => field(&key, v, "expected a string"),
        }
    };
    let username = text("username", "the etcd user")?;
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
    let file = text("passwordFile", "the path of the file holding the password")?;
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

fn tls_files(t: &Map<String, Value>) -> Result<TlsFiles, Error> {
    let path = |k: &str| -> Result<Option<PathBuf>, Error> {
        match t.get(k).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(v) => {
                let key = format!("tls.{k}");
                let s: String = field(&key, v, "expected a file path")?;
                if s.is_empty() || s.contains('\0') {
                    return Err(invalid(&key, s, "expected a file path"));
                }
                Ok(Some(PathBuf::from(s)))
            }
        }
    };
    let (ca, cert, key) = (path("ca")?, path("cert")?, path("key")?);
    if let Some(k) = t
        .keys()
        .find(|k| !["ca", "cert", "key"].contains(&k.as_str()))
    {
        return Err(invalid(
            &format!("tls.{k}"),
            t[k].to_string(),
            "unknown key (known: ca, cert, key)",
        ));
    }
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

    fn parse(v: Value) -> Result<EtcdConfig, Error> {
        EtcdConfig::from_object(v.as_object().unwrap(), &|| Some("host-a".into()))
    }

    fn field_of(e: Error) -> String {
        assert_eq!(e.code(), cni_proto::code::INVALID_CONFIG, "{e}");
        match e {
            Error::Config { field, .. } => field,
            other => panic!("not a config error: {other}"),
        }
    }

    #[test]
    fn defaults_apply() {
        let c = parse(json!({"type": "etcd", "endpoints": ["http://127.0.0.1:2379"]})).unwrap();
        assert_eq!(c.prefix, "/cni/ipam");
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
    }

    #[test]
    fn node_defaults_to_the_host_name_or_fails_naming_node() {
        let v = json!({"type": "etcd", "endpoints": ["http://127.0.0.1:2379"]});
        let e = EtcdConfig::from_object(v.as_object().unwrap(), &|| None).unwrap_err();
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
