//! Our plugin's ADD and DEL on each store backend, side by side: the disk
//! store, the etcd store on a local single-member etcd, on a local
//! three-member cluster, and on a three-member cluster with one member
//! stopped (SIGSTOP: it accepts connections and answers nothing, as a hung
//! member does; a third of the calls start at it) (members started by the
//! bench on loopback ports, data under the data root, stopped at the end).
//! Calls alternate between the backends, one new container per cycle,
//! added then deleted.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::report::{fmt_ms, ms, ratio, spread, stats, Table};

use test_support::etcd as etcd_util;

const NETWORK: &str = "bench-backends";
const SUBNET: &str = "10.129.0.0/16";

/// One backend: its label and the `store` object of its configuration.
struct Backend {
    label: String,
    store: Option<Value>,
}

fn conf(data_dir: &Path, store: &Option<Value>) -> Vec<u8> {
    let mut ipam = json!({"type": "host-local", "subnet": SUBNET, "dataDir": data_dir});
    if let Some(s) = store {
        ipam["store"] = s.clone();
    }
    let c = json!({"cniVersion": "1.1.0", "name": NETWORK, "type": "bridge", "ipam": ipam});
    serde_json::to_vec(&c).expect("config serializes")
}

/// One timed invocation; fails the bench if the plugin fails.
fn timed(plugin: &Path, cmd: &str, id: &str, stdin: &[u8]) -> Result<f64> {
    use std::io::Write;
    let t = Instant::now();
    let mut child = Command::new(plugin)
        .env_clear()
        .env("CNI_COMMAND", cmd)
        .env("CNI_PATH", "/usr/lib/cni")
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", "/var/run/netns/bench")
        .env("CNI_IFNAME", "eth0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {}", plugin.display()))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)?;
    let out = child.wait_with_output()?;
    let wall = ms(t.elapsed());
    if !out.status.success() {
        bail!(
            "{cmd} {id} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(wall)
}

/// The backend table, or why it could not be made (etcd not installed).
pub fn measure(plugin: &Path, root: &Path, cycles: usize) -> Result<Result<Table, String>> {
    if !etcd_util::etcd_installed() {
        return Ok(Err(format!(
            "etcd rows left out: {} or {} not installed (Debian etcd-server, etcd-client)",
            etcd_util::ETCD_BIN,
            etcd_util::ETCDCTL_BIN
        )));
    }
    let data = tempfile::Builder::new()
        .prefix("ipam-bench-backends-")
        .tempdir_in(root)
        .with_context(|| format!("tempdir in {}", root.display()))?;
    eprintln!(
        "store backends: starting etcd (1 member, 3, 3 with one stopped), then {cycles} ADD/DEL cycles"
    );
    let one = etcd_util::Cluster::start_in(1, root);
    let three = etcd_util::Cluster::start_in(3, root);
    let mut hung = etcd_util::Cluster::start_in(3, root);
    // A follower: stopping the leader would measure an election as well.
    let leader = (0..50)
        .find_map(|_| {
            let l = hung.leader();
            if l.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            l
        })
        .context("the three-member cluster elected no leader in 5 s")?;
    let stopped = (0..hung.members())
        .find(|&i| i != leader)
        .expect("three members");
    hung.pause(stopped, true);
    let etcd = |c: &etcd_util::Cluster| {
        Some(
            json!({"type": "etcd", "endpoints": c.endpoints(), "prefix": "/ipam-bench",
            "node": "bench"}),
        )
    };
    let backends = [
        Backend {
            label: "disk".into(),
            store: None,
        },
        Backend {
            label: "etcd, 1 member".into(),
            store: etcd(&one),
        },
        Backend {
            label: "etcd, 3 members".into(),
            store: etcd(&three),
        },
        Backend {
            label: "etcd, 3 members, 1 stopped".into(),
            store: etcd(&hung),
        },
    ];
    let confs: Vec<Vec<u8>> = backends
        .iter()
        .map(|b| conf(data.path(), &b.store))
        .collect();
    // samples[backend][0 ADD, 1 DEL], after one warm-up cycle (the disk
    // store's directory, etcd's first write).
    let mut samples = vec![[Vec::new(), Vec::new()]; backends.len()];
    for (b, c) in confs.iter().enumerate() {
        let id = format!("bench-{b}-warm-up");
        if let Err(e) = timed(plugin, "ADD", &id, c).and_then(|_| timed(plugin, "DEL", &id, c)) {
            // A build without the etcd store refuses its configuration.
            return Ok(Err(format!(
                "store backend rows left out: {} on {}: {e:#}",
                plugin.display(),
                backends[b].label
            )));
        }
    }
    for cycle in 0..cycles {
        for (b, c) in confs.iter().enumerate() {
            let id = format!("bench-{b}-{cycle}");
            let add = timed(plugin, "ADD", &id, c)?;
            let del = timed(plugin, "DEL", &id, c)?;
            samples[b][0].push(add);
            samples[b][1].push(del);
        }
    }
    let mut t = Table::new(&["op", "store", "n", "median", "p10–p90", "vs disk"]);
    for (op, name) in ["ADD", "DEL"].iter().enumerate() {
        let disk = stats(&samples[0][op]).0;
        for (b, backend) in backends.iter().enumerate() {
            let s = stats(&samples[b][op]);
            t.row(vec![
                name.to_string(),
                backend.label.clone(),
                cycles.to_string(),
                fmt_ms(s.0),
                spread(s),
                ratio(s.0, disk),
            ]);
        }
    }
    Ok(Ok(t))
}
