//! What the runtime still knows: a list of valid attachments (authoritative:
//! a file, or the runtime's pod sandboxes over CRI) and libcni's result
//! cache (a heuristic).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use cni_proto::gojson::{Doc, Kind};
use host_local::store::{AttachmentSet, Owner};
use serde_json::Value;

use crate::report::Pod;

/// Where a list of valid attachments came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SourceKind {
    /// `--valid FILE`.
    #[default]
    File,
    /// `--valid -`.
    Stdin,
    /// `--cri URL`: the runtime's pod sandboxes (ListPodSandbox).
    Cri {
        /// `containerd 1.6.20` (CRI Version), when it answered.
        runtime: Option<String>,
        ready: usize,
        not_ready: usize,
    },
}

/// Valid attachments, from `--valid` or `--cri`.
#[derive(Debug, Default)]
pub struct ValidSet {
    /// Where they came from: the file, "stdin", or the CRI endpoint.
    pub source: String,
    pub kind: SourceKind,
    /// The entries; one listed without an ifname makes every attachment of
    /// its container valid.
    set: AttachmentSet,
    pub count: usize,
    /// The `name` of a GC network configuration given as the list.
    pub network: Option<String>,
    /// When the list was made, seconds since the epoch (with their
    /// fraction): a file's modification time; stdin: when it was read.
    pub made: f64,
}

impl ValidSet {
    /// Listed container IDs that are a proper prefix of `id` (a list made
    /// with truncated IDs, like `podman ps -q`).
    pub fn truncates(&self, id: &str) -> bool {
        self.set
            .container_ids()
            .any(|v| v.len() < id.len() && id.starts_with(v))
    }

    /// Whether the reservation's owner is still valid, with the plugin's GC
    /// rules: an attachment must match exactly, a legacy (ID-only) file is
    /// kept when its container has any valid attachment, a damaged file is
    /// never valid.
    pub fn keeps(&self, owner: &Owner) -> bool {
        self.set.holds(owner)
    }

    /// A listed container ID equal to `id` but for ASCII case (a list that
    /// was upper-cased on its way).
    pub fn differs_in_case(&self, id: &str) -> bool {
        self.set
            .container_ids()
            .any(|v| v != id && v.eq_ignore_ascii_case(id))
    }

    /// What the list is, for messages: `the valid list valid.txt`.
    pub fn label(&self) -> String {
        match self.kind {
            SourceKind::Cri { .. } => format!("the sandbox list of CRI {}", self.source),
            _ => format!("the valid list {}", self.source),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn push(&mut self, id: &str, ifname: Option<&str>) {
        match ifname {
            Some(f) => self.set.insert(id, f),
            None => self.set.insert_container(id),
        }
        self.count += 1;
    }
}

/// Reads `--valid FILE` (or `-` for stdin): lines of `containerID ifname`
/// (`#` comments and blank lines ignored; a line with the ID alone makes
/// every attachment of that container valid), a JSON list of
/// `{"containerID", "ifname"}`, or a whole GC configuration carrying
/// `cni.dev/valid-attachments`.
pub fn load_valid(arg: &str) -> Result<ValidSet> {
    let text = crate::cli::read_file_arg(arg, "valid attachments")?;
    let label = if arg == "-" { "stdin" } else { arg };
    let made = if arg == "-" {
        None
    } else {
        std::fs::metadata(arg)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64())
    };
    parse_valid(&text)
        .map(|mut v| {
            v.source = label.to_string();
            v.kind = if arg == "-" {
                SourceKind::Stdin
            } else {
                SourceKind::File
            };
            v.made = made.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64())
            });
            v
        })
        .with_context(|| format!("valid attachments {label}"))
}

/// The runtime's pod sandboxes, listed over CRI at `endpoint`
/// (`unix:///run/containerd/containerd.sock`), as valid attachments: every
/// interface of every sandbox, ready or not ready (a not-ready sandbox may
/// still be set up again; only a removed one is gone). Each call waits at
/// most `timeout`.
pub fn load_cri(endpoint: &str, timeout: std::time::Duration) -> Result<ValidSet> {
    let socket = cri_client::socket_path(endpoint).map_err(|e| anyhow!("--cri: {e}"))?;
    let made = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut cri =
        cri_client::Cri::connect(&socket, timeout).map_err(|e| anyhow!("CRI {endpoint}: {e}"))?;
    let runtime = cri
        .version()
        .ok()
        .map(|v| format!("{} {}", v.runtime_name, v.runtime_version));
    let sandboxes = cri
        .list_pod_sandbox()
        .map_err(|e| anyhow!("CRI {endpoint}: ListPodSandbox: {}", e.message()))?;
    let mut out = ValidSet {
        source: endpoint.to_string(),
        made,
        ..ValidSet::default()
    };
    let (mut ready, mut not_ready) = (0, 0);
    for s in &sandboxes {
        if check_id(&s.id).is_err() {
            crate::out::warn(format_args!(
                "warning: CRI {endpoint}: sandbox ID {:?} is no valid container ID; ignored",
                s.id
            ));
            continue;
        }
        if s.state == cri_client::SANDBOX_READY {
            ready += 1;
        } else {
            not_ready += 1;
        }
        out.push(&s.id, None);
    }
    out.kind = SourceKind::Cri {
        runtime,
        ready,
        not_ready,
    };
    Ok(out)
}

pub fn parse_valid(text: &str) -> Result<ValidSet> {
    let mut out = ValidSet::default();
    let t = text.trim_start();
    if t.starts_with('[') || t.starts_with('{') {
        let v = Doc::parse(t.as_bytes()).map_err(|e| anyhow!("not valid JSON: {e}"))?;
        // A GC config names its network; a bare list does not.
        out.network = match v.field("name", Kind::Scalar) {
            Some(Doc::String(n)) => Some(n.clone()),
            _ => None,
        };
        let list = match v {
            Doc::Array(_) => {
                let wrapped = Doc::Object(vec![("cni.dev/valid-attachments".to_owned(), v)]);
                host_local::plugin::valid_attachments(&wrapped)
            }
            v => host_local::plugin::valid_attachments(&v),
        }
        .map_err(|e| anyhow!("{e}"))?
        .ok_or_else(|| {
            anyhow!("JSON object without cni.dev/valid-attachments (nor cni.dev/attachments)")
        })?;
        for a in list {
            check_id(&a.container_id)?;
            out.push(&a.container_id, Some(&a.ifname));
        }
        return Ok(out);
    }
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [id] => {
                check_id(id).with_context(|| format!("line {}", n + 1))?;
                out.push(id, None);
            }
            [id, ifname] => {
                check_id(id).with_context(|| format!("line {}", n + 1))?;
                out.push(id, Some(ifname));
            }
            _ => bail!(
                "line {}: expected `containerID ifname`, found {line:?}",
                n + 1
            ),
        }
    }
    Ok(out)
}

fn check_id(id: &str) -> Result<()> {
    cni_proto::ContainerId::new(id)
        .map(|_| ())
        .map_err(|e| anyhow!("{e}"))
}

/// One attachment libcni cached a result for (cniCacheV1 format).
#[derive(Clone, Debug)]
pub struct Cached {
    pub id: String,
    pub ifname: String,
    pub pod: Option<Pod>,
    /// The addresses of the cached result.
    pub ips: Vec<IpAddr>,
    /// The cache file.
    pub file: PathBuf,
}

/// libcni's result cache (`<cacheDir>/results/<network>-<containerID>-<ifname>`).
#[derive(Debug, Default)]
pub struct ResultsCache {
    pub dir: PathBuf,
    /// Attachments of this network, by (containerID, ifname).
    pub attachments: BTreeMap<(String, String), Cached>,
    /// (network, containerID, ifname) from files in libcni's cniCacheV1 format.
    parsed: HashSet<(String, String, String)>,
    /// File names, for older caches holding only the result.
    names: HashSet<String>,
    /// Cache files for this network.
    pub entries: usize,
}

impl ResultsCache {
    /// Reads the entries of `network`. A missing directory is an error.
    pub fn load(dir: &Path, network: &str) -> Result<ResultsCache> {
        let rd =
            std::fs::read_dir(dir).map_err(|e| anyhow!("results cache {}: {e}", dir.display()))?;
        let prefix = format!("{network}-");
        let mut out = ResultsCache {
            dir: dir.to_path_buf(),
            ..Default::default()
        };
        for ent in rd {
            let ent = ent.map_err(|e| anyhow!("results cache {}: {e}", dir.display()))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            let data = if name.starts_with(&prefix) {
                out.entries += 1;
                out.names.insert(name.clone());
                read_limited(&ent.path())
            } else {
                // Another network's name may itself start with ours plus '-';
                // the content says which network a file is for.
                None
            };
            let Some(data) = data else { continue };
            let Ok(v) = serde_json::from_slice::<Value>(&data) else {
                continue;
            };
            let get = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
            if let (Some(net), Some(id), Some(ifname)) =
                (get("networkName"), get("containerId"), get("ifName"))
            {
                if net == network {
                    out.attachments.insert(
                        (id.clone(), ifname.clone()),
                        Cached {
                            id: id.clone(),
                            ifname: ifname.clone(),
                            pod: pod_of(&v),
                            ips: result_ips(v.get("result")),
                            file: ent.path(),
                        },
                    );
                }
                out.parsed.insert((net, id, ifname));
            }
        }
        Ok(out)
    }

    /// The pod of the reservation's attachment, when the cache names it (a
    /// legacy reservation: any interface of its container).
    pub fn pod(&self, owner: &Owner) -> Option<Pod> {
        match owner {
            Owner::Attachment { id, ifname } => self
                .attachments
                .get(&(id.clone(), ifname.clone()))
                .and_then(|c| c.pod.clone()),
            Owner::Legacy { id } => self
                .attachments
                .values()
                .filter(|c| &c.id == id)
                .find_map(|c| c.pod.clone()),
            Owner::Damaged => None,
        }
    }

    /// Whether the runtime cached a result for the reservation's attachment.
    pub fn knows(&self, network: &str, owner: &Owner) -> bool {
        match owner {
            Owner::Attachment { id, ifname } => {
                self.parsed
                    .contains(&(network.to_string(), id.clone(), ifname.clone()))
                    || self.names.contains(&format!("{network}-{id}-{ifname}"))
            }
            Owner::Legacy { id } => {
                self.parsed.iter().any(|(n, i, _)| n == network && i == id)
                    || self
                        .names
                        .iter()
                        .any(|f| f.starts_with(&format!("{network}-{id}-")))
            }
            Owner::Damaged => false,
        }
    }
}

/// `cniArgs`: a list of [key, value] pairs, as libcni writes them.
fn pod_of(v: &Value) -> Option<Pod> {
    let args = v.get("cniArgs")?.as_array()?;
    let get = |key: &str| {
        args.iter().find_map(|kv| {
            let kv = kv.as_array()?;
            (kv.first()?.as_str()? == key).then(|| kv.get(1)?.as_str().map(str::to_string))?
        })
    };
    Some(Pod {
        namespace: get("K8S_POD_NAMESPACE")?,
        name: get("K8S_POD_NAME")?,
    })
}

/// The addresses of a cached result: `ips[].address` (0.3.0 and later) or
/// `ip4.ip`/`ip6.ip` (0.1.0, 0.2.0), without their prefix length.
fn result_ips(result: Option<&Value>) -> Vec<IpAddr> {
    let Some(r) = result else { return Vec::new() };
    let mut texts: Vec<&str> = r
        .get("ips")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|ip| ip.get("address")?.as_str())
                .collect()
        })
        .unwrap_or_default();
    for k in ["ip4", "ip6"] {
        if let Some(t) = r.get(k).and_then(|o| o.get("ip")).and_then(Value::as_str) {
            texts.push(t);
        }
    }
    texts
        .into_iter()
        .filter_map(|t| t.split('/').next()?.parse().ok())
        .map(host_local::addr::canonical)
        .collect()
}

fn read_limited(p: &Path) -> Option<Vec<u8>> {
    let f = std::fs::File::open(p).ok()?;
    cni_proto::read_bounded(f, 1 << 20, "cached result").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(id: &str, ifname: &str) -> Owner {
        Owner::Attachment {
            id: id.into(),
            ifname: ifname.into(),
        }
    }

    #[test]
    fn lines_and_json() {
        let v = parse_valid("# comment\nc1 eth0\n\nc2\n").unwrap();
        assert!(v.keeps(&att("c1", "eth0")));
        assert!(!v.keeps(&att("c1", "eth1")));
        assert!(v.keeps(&att("c2", "net9")));
        assert!(v.keeps(&Owner::Legacy { id: "c1".into() }));
        assert!(!v.keeps(&Owner::Legacy { id: "c3".into() }));
        let v = parse_valid(r#"[{"containerID":"c1","ifname":"eth0"}]"#).unwrap();
        assert!(v.keeps(&att("c1", "eth0")));
        let v = parse_valid(
            r#"{"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(v.count, 1);
        assert!(parse_valid("c1 eth0 extra").is_err());
        assert!(parse_valid("{\"name\":\"x\"}").is_err());
        assert!(parse_valid("-bad eth0").is_err());
        let v = parse_valid(r#"{"name":"n2","cni.dev/valid-attachments":[]}"#).unwrap();
        assert_eq!(v.network.as_deref(), Some("n2"));
        let v = parse_valid("0123456789ab\n").unwrap();
        assert!(v.truncates("0123456789abcdef"));
        assert!(!v.truncates("0123456789ab"));
    }

    #[test]
    fn cache_pods_and_addresses() {
        let v: Value = serde_json::json!({
            "cniArgs": [["IgnoreUnknown", "1"], ["K8S_POD_NAMESPACE", "ns"], ["K8S_POD_NAME", "p"]],
            "result": {"ips": [{"address": "10.0.0.2/24"}, {"address": "2001:db8:0::2/64"}]}
        });
        assert_eq!(
            pod_of(&v),
            Some(Pod {
                namespace: "ns".into(),
                name: "p".into()
            })
        );
        assert_eq!(
            result_ips(v.get("result")),
            [
                "10.0.0.2".parse::<IpAddr>().unwrap(),
                "2001:db8::2".parse().unwrap()
            ]
        );
        let old = serde_json::json!({"ip4": {"ip": "10.0.0.3/24"}});
        assert_eq!(
            result_ips(Some(&old)),
            ["10.0.0.3".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            pod_of(&serde_json::json!({"cniArgs": [["K8S_POD_NAME", "p"]]})),
            None
        );
    }
}
