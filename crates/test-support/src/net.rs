//! `Net`: one network under test, driven through a plugin binary the way a
//! runtime drives it. Suites that run ADD, DEL, CHECK, GC or STATUS on a
//! network say which network once and then name the command, instead of
//! putting `net_conf`, `cni_env` and `run_plugin` together for each call.

use std::path::{Path, PathBuf};
use std::process::Child;

use serde_json::{json, Value};

use crate::{cni_env, net_conf, run_plugin, spawn_plugin, Output};

/// A network under test: the plugin binary, the network's name, its
/// `cniVersion`, its data directory and `ipam` section, optionally a
/// `store` section and extra top-level keys. Each command builds the
/// configuration afresh with `net_conf` (so `type` and `dataDir` are added
/// to `ipam`, `"type": "bridge"` at the top level) and runs the binary
/// once, cleared environment and all.
///
/// The `with_*` methods return a changed copy: the same network at another
/// version, from another binary, on another data directory.
#[derive(Debug, Clone)]
pub struct Net {
    pub bin: PathBuf,
    pub name: String,
    /// `cniVersion`; 1.1.0 unless changed.
    pub version: String,
    pub data: PathBuf,
    /// The `ipam` section without `type` and `dataDir`.
    pub ipam: Value,
    /// Put into `ipam.store` when set.
    pub store: Option<Value>,
    /// Merged into the top level of every configuration (an object).
    pub top: Value,
}

impl Net {
    /// Network `name` with `ipam`, its data directory `data`, run by `bin`
    /// at cniVersion 1.1.0.
    pub fn new(bin: impl Into<PathBuf>, name: &str, data: &Path, ipam: Value) -> Net {
        Net {
            bin: bin.into(),
            name: name.to_string(),
            version: "1.1.0".into(),
            data: data.to_path_buf(),
            ipam,
            store: None,
            top: json!({}),
        }
    }

    pub fn with_version(&self, version: &str) -> Net {
        Net {
            version: version.into(),
            ..self.clone()
        }
    }

    pub fn with_bin(&self, bin: impl Into<PathBuf>) -> Net {
        Net {
            bin: bin.into(),
            ..self.clone()
        }
    }

    pub fn with_data(&self, data: &Path) -> Net {
        Net {
            data: data.to_path_buf(),
            ..self.clone()
        }
    }

    pub fn with_ipam(&self, ipam: Value) -> Net {
        Net {
            ipam,
            ..self.clone()
        }
    }

    pub fn with_store(&self, store: Value) -> Net {
        Net {
            store: Some(store),
            ..self.clone()
        }
    }

    /// This network with `top`'s keys added to (or replacing) the top level.
    pub fn with_top(&self, top: Value) -> Net {
        let mut n = self.clone();
        if let Value::Object(m) = top {
            for (k, v) in m {
                n.top[k] = v;
            }
        }
        n
    }

    /// The configuration a command gets on stdin.
    pub fn conf(&self) -> Vec<u8> {
        let mut ipam = self.ipam.clone();
        if let Some(s) = &self.store {
            ipam["store"] = s.clone();
        }
        net_conf(
            &self.version,
            &self.name,
            &self.data,
            ipam,
            self.top.clone(),
        )
    }

    /// One run with exactly these environment variables (plus PATH).
    pub fn run(&self, env: &[(&str, &str)]) -> Output {
        run_plugin(&self.bin, env, &self.conf())
    }

    /// `command` for (`id`, `ifname`), with the usual CNI environment.
    pub fn cmd(&self, command: &str, id: &str, ifname: &str) -> Output {
        self.run(&cni_env(command, id, ifname))
    }

    /// `command` for (`id`, `ifname`) started, not waited for: many can
    /// be in flight at once. Collect each with `crate::wait_plugin`.
    pub fn spawn(&self, command: &str, id: &str, ifname: &str) -> Child {
        spawn_plugin(&self.bin, &cni_env(command, id, ifname), &self.conf())
    }

    pub fn add(&self, id: &str, ifname: &str) -> Output {
        self.cmd("ADD", id, ifname)
    }

    /// ADD with `CNI_ARGS` (e.g. `IP=10.0.0.9`).
    pub fn add_args(&self, id: &str, ifname: &str, cni_args: &str) -> Output {
        let mut env = cni_env("ADD", id, ifname);
        env.push(("CNI_ARGS", cni_args));
        self.run(&env)
    }

    /// ADD that must succeed: the addresses it printed (no prefix length).
    #[track_caller]
    pub fn add_ok(&self, id: &str, ifname: &str) -> Vec<String> {
        let o = self.add(id, ifname);
        assert_eq!(o.code, 0, "ADD {id}/{ifname} on {}: {o:?}", self.name);
        o.ips()
    }

    pub fn del(&self, id: &str, ifname: &str) -> Output {
        self.cmd("DEL", id, ifname)
    }

    /// CHECK without a prevResult.
    pub fn check(&self, id: &str, ifname: &str) -> Output {
        self.cmd("CHECK", id, ifname)
    }

    /// CHECK with `prev` as the configuration's `prevResult`.
    pub fn check_prev(&self, id: &str, ifname: &str, prev: &Value) -> Output {
        self.with_top(json!({ "prevResult": prev }))
            .check(id, ifname)
    }

    /// GC keeping exactly the attachments `valid` (containerID, ifname),
    /// passed as `cni.dev/valid-attachments`.
    pub fn gc(&self, valid: &[(&str, &str)]) -> Output {
        self.gc_with(json!({ "cni.dev/valid-attachments": attachments(valid) }))
    }

    /// GC with `top` added to the top level as it is: another key, a
    /// malformed list, none at all.
    pub fn gc_with(&self, top: Value) -> Output {
        let env = [("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")];
        self.with_top(top).run(&env)
    }

    pub fn status(&self) -> Output {
        self.run(&[("CNI_COMMAND", "STATUS")])
    }
}

/// A valid-attachments list: `[{"containerID": .., "ifname": ..}, ..]`.
pub fn attachments(list: &[(&str, &str)]) -> Value {
    Value::Array(
        list.iter()
            .map(|(c, i)| json!({"containerID": c, "ifname": i}))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait_plugin;

    /// What a command sent: `/bin/cat` stands in for the plugin and prints
    /// its stdin back.
    fn sent(o: &Output) -> Value {
        assert_eq!(o.code, 0, "{o:?}");
        o.json()
    }

    #[test]
    fn commands_send_the_configuration_they_say() {
        let net = Net::new(
            "/bin/cat",
            "n1",
            Path::new("/d"),
            json!({"subnet": "10.0.0.0/24"}),
        );
        let c = sent(&net.add("c1", "eth0"));
        assert_eq!(c["cniVersion"], "1.1.0");
        assert_eq!(c["name"], "n1");
        assert_eq!(
            c["ipam"],
            json!({"subnet": "10.0.0.0/24", "type": "host-local", "dataDir": "/d"})
        );
        let c = sent(
            &net.with_store(json!({"type": "etcd"}))
                .with_version("0.4.0")
                .del("c1", "eth0"),
        );
        assert_eq!(c["cniVersion"], "0.4.0");
        assert_eq!(c["ipam"]["store"], json!({"type": "etcd"}));
        let c = sent(&net.check_prev("c1", "eth0", &json!({"ips": []})));
        assert_eq!(c["prevResult"], json!({"ips": []}));
        let c = sent(&net.gc(&[("a", "eth0"), ("b", "net1")]));
        assert_eq!(
            c["cni.dev/valid-attachments"],
            json!([{"containerID": "a", "ifname": "eth0"}, {"containerID": "b", "ifname": "net1"}])
        );
        let c = sent(&net.with_top(json!({"x": 1})).gc_with(json!({"y": 2})));
        assert_eq!((c["x"].clone(), c["y"].clone()), (json!(1), json!(2)));
        assert!(c.get("cni.dev/valid-attachments").is_none());
        let c = sent(&wait_plugin(net.spawn("ADD", "c1", "eth0")));
        assert_eq!(c["name"], "n1");
    }
}
