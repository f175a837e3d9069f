//! What the runtime still knows: a list of valid attachments (authoritative)
//! and libcni's result cache (a heuristic).

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use cni_proto::gojson::Doc;
use host_local::store::Owner;
use serde_json::Value;

/// Valid attachments, from `--valid`.
#[derive(Debug, Default)]
pub struct ValidSet {
    /// Where they came from ("-" for stdin).
    pub source: String,
    exact: HashSet<(String, String)>,
    /// Container IDs of every entry (keeps legacy, ID-only reservations).
    ids: HashSet<String>,
    /// Containers listed without an ifname: every attachment of theirs is valid.
    whole: HashSet<String>,
    pub count: usize,
}

impl ValidSet {
    /// Whether the reservation's owner is still valid, with the plugin's GC
    /// rules: an attachment must match exactly, a legacy (ID-only) file is
    /// kept when its container has any valid attachment, a damaged file is
    /// never valid.
    pub fn keeps(&self, owner: &Owner) -> bool {
        match owner {
            Owner::Attachment { id, ifname } => {
                self.whole.contains(id) || self.exact.contains(&(id.clone(), ifname.clone()))
            }
            Owner::Legacy { id } => self.ids.contains(id),
            Owner::Damaged { .. } => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn push(&mut self, id: &str, ifname: Option<&str>) {
        self.ids.insert(id.to_string());
        match ifname {
            Some(f) => {
                self.exact.insert((id.to_string(), f.to_string()));
            }
            None => {
                self.whole.insert(id.to_string());
            }
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
    let text = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("valid attachments from stdin")?;
        s
    } else {
        std::fs::read_to_string(arg).with_context(|| format!("valid attachments {arg}"))?
    };
    let label = if arg == "-" { "stdin" } else { arg };
    parse_valid(&text)
        .map(|mut v| {
            v.source = label.to_string();
            v
        })
        .with_context(|| format!("valid attachments {label}"))
}

pub fn parse_valid(text: &str) -> Result<ValidSet> {
    let mut out = ValidSet::default();
    let t = text.trim_start();
    if t.starts_with('[') || t.starts_with('{') {
        let v = Doc::parse(t.as_bytes()).map_err(|e| anyhow!("not valid JSON: {e}"))?;
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

/// libcni's result cache (`<cacheDir>/results/<network>-<containerID>-<ifname>`).
#[derive(Debug, Default)]
pub struct ResultsCache {
    pub dir: PathBuf,
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
                out.parsed.insert((net, id, ifname));
            }
        }
        Ok(out)
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
            Owner::Damaged { .. } => false,
        }
    }
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
    }
}
