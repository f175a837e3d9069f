//! Finding the host-local `ipam` sections of network configurations: a
//! `.conf`, a `.conflist`, or a directory of them such as /etc/cni/net.d.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use cni_proto::gojson::{Doc, Kind};
use cni_proto::{CniArgs, NetworkName, SpecVersion};
use host_local::config::IpamConfig;

/// The host-local configuration of one network.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub network: String,
    /// The file it came from.
    pub source: PathBuf,
    pub ipam: IpamConfig,
    /// The plugin takes `ipRanges` from the runtime: addresses outside the
    /// configured ranges may be legitimate.
    pub runtime_ranges: bool,
    /// The section names a `dataDir` (else the default applies, and
    /// `--data-dir` may stand in for it).
    pub data_dir_explicit: bool,
}

/// Every host-local network found, by name, plus warnings about files that
/// could not be used.
#[derive(Debug, Default)]
pub struct Configs {
    pub path: Option<PathBuf>,
    pub networks: BTreeMap<String, NetConfig>,
    pub warnings: Vec<String>,
}

impl NetConfig {
    /// The `ipam.store` object when it selects the etcd store: the network
    /// is kept in etcd, not in a directory.
    pub fn etcd_store(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.ipam
            .store
            .as_ref()
            .and_then(serde_json::Value::as_object)
            .filter(|o| o.get("type").and_then(serde_json::Value::as_str) == Some("etcd"))
    }
}

impl Configs {
    /// The configuration of `network` when it keeps the network in etcd.
    pub fn etcd(&self, network: &str) -> Option<&NetConfig> {
        self.get(network).filter(|c| c.etcd_store().is_some())
    }

    pub fn get(&self, network: &str) -> Option<&NetConfig> {
        self.networks.get(network)
    }
}

fn is_config_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("conf" | "conflist" | "json")
    )
}

/// Loads `path`: a file must hold a usable host-local section (else an
/// error); in a directory, unusable files become warnings. Like libcni, files
/// are taken in name order and the first one naming a network wins.
pub fn load(path: &Path) -> Result<Configs> {
    let mut out = Configs {
        path: Some(path.to_path_buf()),
        ..Default::default()
    };
    let meta = std::fs::metadata(path).with_context(|| format!("config {}", path.display()))?;
    if meta.is_dir() {
        let rd = std::fs::read_dir(path)
            .with_context(|| format!("config directory {}", path.display()))?;
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| is_config_file(p) && p.is_file())
            .collect();
        files.sort();
        for f in files {
            match parse_file(&f) {
                Ok(found) => {
                    for c in found {
                        add(&mut out, c);
                    }
                }
                Err(e) => out.warnings.push(format!("{}: {e:#}", f.display())),
            }
        }
    } else {
        let found = parse_file(path).with_context(|| format!("config {}", path.display()))?;
        if found.is_empty() {
            bail!(
                "config {}: no plugin with a host-local ipam section",
                path.display()
            );
        }
        for c in found {
            add(&mut out, c);
        }
    }
    Ok(out)
}

fn add(out: &mut Configs, c: NetConfig) {
    match out.networks.get(&c.network) {
        Some(prev) => out.warnings.push(format!(
            "{}: network {} already configured by {}; ignored",
            c.source.display(),
            c.network,
            prev.source.display()
        )),
        None => {
            out.networks.insert(c.network.clone(), c);
        }
    }
}

// Keys are matched as libcni's Go decoder matches them (case-insensitively, last one wins).

fn is_host_local(ipam: &Doc) -> bool {
    matches!(ipam.field("type", Kind::Scalar), Some(Doc::String(t)) if t == "host-local")
}

fn runtime_ranges(plugin: &Doc) -> bool {
    plugin
        .field("capabilities", Kind::Whole)
        .and_then(|c| c.field("ipRanges", Kind::Scalar))
        == Some(&Doc::Bool(true))
}

/// The host-local sections of one file (none is not an error here).
fn parse_file(path: &Path) -> Result<Vec<NetConfig>> {
    let text = std::fs::read(path)?;
    let v = Doc::parse(&text).map_err(|e| anyhow!("not JSON: {e}"))?;
    let name = match v.field("name", Kind::Scalar) {
        Some(Doc::String(n)) => n.as_str(),
        _ => bail!("no network name"),
    };
    NetworkName::new(name).map_err(|e| anyhow!("{e}"))?;
    let mut sections: Vec<(&Doc, bool)> = Vec::new();
    match v.field("plugins", Kind::Whole) {
        Some(Doc::Array(plugins)) => {
            for p in plugins {
                if let Some(ipam) = p.field("ipam", Kind::Whole).filter(|i| is_host_local(i)) {
                    sections.push((ipam, runtime_ranges(p)));
                }
            }
        }
        Some(_) => bail!("plugins is not a list"),
        None => {
            if let Some(ipam) = v.field("ipam", Kind::Whole).filter(|i| is_host_local(i)) {
                sections.push((ipam, runtime_ranges(&v)));
            }
        }
    }
    let mut out = Vec::new();
    for (i, (ipam, rt)) in sections.into_iter().enumerate() {
        if i > 0 {
            // Two host-local plugins in one list share one store directory;
            // the first one's ranges are the ones shown.
            continue;
        }
        let doc = Doc::Object(vec![("ipam".to_owned(), ipam.clone())]);
        let cfg = IpamConfig::from_doc(name, SpecVersion::LATEST, &doc, &CniArgs::default())
            .map_err(|e| anyhow!("{e}"))?;
        out.push(NetConfig {
            network: name.to_string(),
            source: path.to_path_buf(),
            ipam: cfg,
            runtime_ranges: rt,
            // Go's decoder matches keys case-insensitively.
            data_dir_explicit: ipam.field("dataDir", Kind::Scalar).is_some(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_as_in_go() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("10-net.conflist");
        std::fs::write(
            &p,
            r#"{"Name": "net1", "Plugins": [{"type": "bridge", "Capabilities": {"IPRanges": true},
                "IPAM": {"Type": "host-local", "Subnet": "10.1.2.0/24", "DataDir": "/srv/ipam"}}]}"#,
        )
        .unwrap();
        let c = load(&p).unwrap();
        let n = c.get("net1").unwrap();
        assert!(n.runtime_ranges);
        assert_eq!(n.ipam.data_dir, PathBuf::from("/srv/ipam"));
        assert_eq!(n.ipam.ranges[0].0[0].subnet.to_string(), "10.1.2.0/24");
    }
}
