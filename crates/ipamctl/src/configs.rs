//! Finding the host-local `ipam` sections of network configurations: a
//! `.conf`, a `.conflist`, or a directory of them such as /etc/cni/net.d.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use cni_proto::gojson::{Doc, Kind};
use cni_proto::{CniArgs, NetworkName, SpecVersion};
use host_local::config::{EtcdConfig, IpamConfig, StoreConfig};
use serde::Serialize;

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
    /// The `dataDir` as the plugin reads it (the default when not named):
    /// the disk store's directory; beside an etcd store, where a disk store
    /// of the same network may have been left.
    pub data_dir: PathBuf,
}

/// A configuration file that could not be used: not JSON, no network name,
/// or an invalid host-local `ipam` section (then every ADD on its network
/// fails, so it is reported, never just skipped).
#[derive(Clone, Debug, Serialize)]
pub struct ConfigError {
    pub file: PathBuf,
    /// The network it names, when that could be read.
    pub network: Option<String>,
    pub error: String,
}

/// Every host-local network found, by name; the files that could not be
/// used; warnings (a network configured twice).
#[derive(Debug, Default)]
pub struct Configs {
    pub path: Option<PathBuf>,
    pub networks: BTreeMap<String, NetConfig>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<String>,
}

impl NetConfig {
    /// The etcd store's configuration when the network is kept in etcd.
    pub fn etcd_store(&self) -> Option<&EtcdConfig> {
        match &self.ipam.store {
            StoreConfig::Etcd(c) => Some(c),
            StoreConfig::Disk { .. } => None,
        }
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

    /// The unusable configuration of `network`, when no usable one names it.
    pub fn broken(&self, network: &str) -> Option<&ConfigError> {
        if self.networks.contains_key(network) {
            return None;
        }
        self.errors
            .iter()
            .find(|e| e.network.as_deref() == Some(network))
    }

    /// The names of networks only unusable configurations name.
    pub fn broken_networks(&self) -> impl Iterator<Item = &str> {
        let mut names: Vec<&str> = self
            .errors
            .iter()
            .filter_map(|e| e.network.as_deref())
            .filter(|n| !self.networks.contains_key(*n))
            .collect();
        names.sort_unstable();
        names.dedup();
        names.into_iter()
    }
}

fn is_config_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("conf" | "conflist" | "json")
    )
}

/// Loads `path`: a file must hold a usable host-local section (else an
/// error); in a directory, unusable files are recorded in `errors`. Like
/// libcni, files are taken in name order and the first one naming a network
/// wins.
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
                Err((network, e)) => out.errors.push(ConfigError {
                    file: f.clone(),
                    network,
                    error: format!("{e:#}"),
                }),
            }
        }
    } else {
        let found = parse_file(path)
            .map_err(|(_, e)| e)
            .with_context(|| format!("config {}", path.display()))?;
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

/// The host-local sections of one file (none is not an error here). An
/// error carries the network name when it could be read.
fn parse_file(path: &Path) -> Result<Vec<NetConfig>, (Option<String>, anyhow::Error)> {
    let text = std::fs::read(path).map_err(|e| (None, e.into()))?;
    let v = Doc::parse(&text).map_err(|e| (None, anyhow!("not JSON: {e}")))?;
    let name = match v.field("name", Kind::Scalar) {
        Some(Doc::String(n)) => n.as_str(),
        _ => return Err((None, anyhow!("no network name"))),
    };
    NetworkName::new(name).map_err(|e| (None, anyhow!("{e}")))?;
    parse_sections(path, name, &v).map_err(|e| (Some(name.to_string()), e))
}

/// The host-local sections of network `name`'s configuration `v`.
fn parse_sections(path: &Path, name: &str, v: &Doc) -> Result<Vec<NetConfig>> {
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
                sections.push((ipam, runtime_ranges(v)));
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
        // Go's decoder matches keys case-insensitively.
        let data_dir_text = match ipam.field("dataDir", Kind::Scalar) {
            Some(Doc::String(d)) => Some(d.as_str()),
            _ => None,
        };
        let data_dir = match &cfg.store {
            StoreConfig::Disk { data_dir } => data_dir.clone(),
            StoreConfig::Etcd(_) => {
                host_local::config::validate::data_dir(data_dir_text).map_err(|e| anyhow!("{e}"))?
            }
        };
        out.push(NetConfig {
            network: name.to_string(),
            source: path.to_path_buf(),
            ipam: cfg,
            runtime_ranges: rt,
            data_dir_explicit: data_dir_text.is_some(),
            data_dir,
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
        assert_eq!(n.data_dir, PathBuf::from("/srv/ipam"));
        assert_eq!(n.ipam.ranges[0].0[0].subnet.to_string(), "10.1.2.0/24");
    }
}
