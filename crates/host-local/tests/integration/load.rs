//! Sustained load through the real binary: many worker threads, each running
//! our plugin process after process, mixed ADD, CHECK, DEL and GC on one /16
//! network.
//!
//! Each worker owns its containers, so the expected final store is the union
//! of what every worker still holds. Checked throughout:
//! - no duplicate address: an ADD returning an address currently held by
//!   another live attachment fails the test (a shared address -> owner map);
//! - no lost reservation: a CHECK right after every ADD, and random CHECKs of
//!   live attachments later, must succeed (GCs run concurrently);
//! - the final directory holds exactly the live attachments' reservations.
//!
//! GC safety: the valid-attachments list a GC passes is a snapshot of a
//! shared set that a worker marks *before* spawning an ADD and unmarks only
//! *after* its DEL returned. That alone is not enough: a GC whose snapshot
//! was taken just before the mark can still be on its way to the lock while
//! the ADD completes, and would then (rightly, by its list) remove the fresh
//! reservation; measured, it does, a few times per thousand operations. So,
//! as a runtime must, the test never has a GC in flight with an ADD it could
//! not have known about: ADDs hold a shared gate (mark + run), a GC holds it
//! exclusively (snapshot + run). DEL, CHECK and other ADDs still race freely.
//!
//! IPAM_LOAD_OPS (operations per worker, default 1000) and IPAM_LOAD_WORKERS
//! (default 64) scale it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde_json::json;

use crate::common::{our_net, Net, Output, Rng};

type Att = (String, String);

struct Shared {
    /// ADDs hold it shared, GCs exclusively (see the module comment).
    gc_gate: RwLock<()>,
    /// Attachments a GC must keep (marked before ADD, unmarked after DEL).
    valid: Mutex<BTreeSet<Att>>,
    /// Live address -> owner, as ADD results reported them.
    owners: Mutex<HashMap<IpAddr, Att>>,
    failures: Mutex<Vec<String>>,
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl Shared {
    fn fail(&self, msg: String) {
        let mut f = self.failures.lock().unwrap();
        if f.len() < 100 {
            f.push(msg);
        }
    }
    fn count(&self, what: &'static str) {
        *self.counts.lock().unwrap().entry(what).or_default() += 1;
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The /16 network every worker runs on, its data in `data`.
fn load_net(data: &Path) -> Net {
    our_net("load", data, json!({"subnet": "10.20.0.0/16"}))
}

/// GC keeping exactly `valid`.
fn gc(net: &Net, valid: &BTreeSet<Att>) -> Output {
    let list: Vec<(&str, &str)> = valid
        .iter()
        .map(|(c, i)| (c.as_str(), i.as_str()))
        .collect();
    net.gc(&list)
}

/// Attachments per worker: two containers with two interfaces each.
const ATTACHMENTS: [(&str, &str); 4] = [("a", "eth0"), ("a", "eth1"), ("b", "eth0"), ("b", "net1")];

fn worker(w: usize, ops: usize, data: &Path, sh: &Shared) -> HashMap<Att, IpAddr> {
    let net = load_net(data);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1).wrapping_mul(0x1234_5678_9abc_def1));
    let atts: Vec<Att> = ATTACHMENTS
        .iter()
        .map(|(c, i)| (format!("w{w}-{c}"), i.to_string()))
        .collect();
    let mut alive: HashMap<Att, IpAddr> = HashMap::new();
    let mut done = 0;
    let no_gc = std::env::var_os("IPAM_LOAD_NO_GC").is_some();
    while done < ops {
        let free: Vec<&Att> = atts.iter().filter(|a| !alive.contains_key(*a)).collect();
        let live: Vec<Att> = alive.keys().cloned().collect();
        let roll = rng.below(100);
        let op = if live.is_empty() || (roll < 35 && !free.is_empty()) {
            "ADD"
        } else if roll < 60 {
            "CHECK"
        } else if roll < 92 || no_gc {
            "DEL"
        } else {
            "GC"
        };
        done += 1;
        sh.count(op);
        match op {
            "ADD" => {
                let att = free[rng.below(free.len() as u64) as usize].clone();
                let gate = sh.gc_gate.read().unwrap();
                sh.valid.lock().unwrap().insert(att.clone());
                let out = net.add(&att.0, &att.1);
                drop(gate);
                if out.code != 0 {
                    sh.fail(format!("ADD {att:?}: {}", out.stdout));
                    sh.valid.lock().unwrap().remove(&att);
                    continue;
                }
                let v = out.json();
                let ip: IpAddr = v["ips"][0]["address"]
                    .as_str()
                    .and_then(|a| a.split('/').next())
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_else(|| panic!("no address in {v}"));
                {
                    let mut owners = sh.owners.lock().unwrap();
                    if let Some(other) = owners.get(&ip) {
                        sh.fail(format!(
                            "DUPLICATE {ip}: ADD {att:?} while {other:?} holds it"
                        ));
                    }
                    owners.insert(ip, att.clone());
                }
                alive.insert(att.clone(), ip);
                // No lost reservation: it is there right after.
                let c = net.check(&att.0, &att.1);
                sh.count("CHECK after ADD");
                if c.code != 0 {
                    let file = std::fs::read(data.join("load").join(ip.to_string()));
                    sh.fail(format!(
                        "CHECK right after ADD {att:?} ({ip}): {} (file: {:?})",
                        c.stdout.replace('\n', " "),
                        file.map(|f| String::from_utf8_lossy(&f).into_owned())
                    ));
                }
            }
            "CHECK" => {
                let att = &live[rng.below(live.len() as u64) as usize];
                let c = net.check(&att.0, &att.1);
                if c.code != 0 {
                    sh.fail(format!(
                        "CHECK {att:?} ({}): {}",
                        alive[att],
                        c.stdout.replace('\n', " ")
                    ));
                }
            }
            "DEL" => {
                let att = live[rng.below(live.len() as u64) as usize].clone();
                let ip = alive.remove(&att).unwrap();
                // Forget the owner before the file goes: no ADD can return
                // the address while it is still reserved on disk.
                sh.owners.lock().unwrap().remove(&ip);
                let out = net.del(&att.0, &att.1);
                if out.code != 0 {
                    sh.fail(format!("DEL {att:?}: {}", out.stdout));
                }
                sh.valid.lock().unwrap().remove(&att);
            }
            _ => {
                let gate = sh.gc_gate.write().unwrap();
                let valid = sh.valid.lock().unwrap().clone();
                let out = gc(&net, &valid);
                drop(gate);
                if out.code != 0 {
                    sh.fail(format!("GC: {}", out.stdout));
                }
            }
        }
    }
    alive
}

/// The reservations in the network directory: address -> (id, ifname), and
/// any other names besides the lock and cursors.
fn read_store(net: &Path) -> (BTreeMap<IpAddr, Att>, Vec<String>) {
    let mut res = BTreeMap::new();
    let mut other = Vec::new();
    for e in std::fs::read_dir(net).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        match name.parse::<IpAddr>() {
            Ok(ip) => {
                let text = std::fs::read_to_string(e.path()).unwrap();
                let (id, ifname) = text.split_once("\r\n").unwrap_or((&text, ""));
                res.insert(ip, (id.to_string(), ifname.to_string()));
            }
            Err(_) if name == "lock" || name.starts_with("last_reserved_ip.") => {}
            Err(_) => other.push(name),
        }
    }
    (res, other)
}

#[test]
fn sustained_mixed_load() {
    let workers = env_usize("IPAM_LOAD_WORKERS", 64);
    let ops = env_usize("IPAM_LOAD_OPS", 1000);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sh = Arc::new(Shared {
        gc_gate: RwLock::new(()),
        valid: Mutex::new(BTreeSet::new()),
        owners: Mutex::new(HashMap::new()),
        failures: Mutex::new(Vec::new()),
        counts: Mutex::new(BTreeMap::new()),
    });
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let sh = sh.clone();
            let data = data.clone();
            std::thread::spawn(move || worker(w, ops, &data, &sh))
        })
        .collect();
    let mut expected: BTreeMap<IpAddr, Att> = BTreeMap::new();
    for h in handles {
        for (att, ip) in h.join().expect("worker panicked") {
            assert!(expected.insert(ip, att).is_none(), "two workers hold {ip}");
        }
    }
    let elapsed = start.elapsed();
    let counts = sh.counts.lock().unwrap().clone();
    let runs: u64 = counts.values().sum();
    eprintln!(
        "load: {workers} workers x {ops} ops = {runs} plugin runs in {elapsed:?} ({:.0} runs/s): {counts:?}",
        runs as f64 / elapsed.as_secs_f64()
    );
    let failures = sh.failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures, first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The final store is exactly what the operations imply.
    let (store, other) = read_store(&data.join("load"));
    assert!(other.is_empty(), "unexpected files: {other:?}");
    assert_eq!(
        store, expected,
        "final store differs from the live attachments"
    );
    // And the plugin agrees: every live attachment CHECKs, a GC with the full
    // list removes nothing, one with an empty list removes everything.
    let net = load_net(&data);
    for att in expected.values().take(16) {
        let c = net.check(&att.0, &att.1);
        assert_eq!(c.code, 0, "final CHECK {att:?}: {}", c.stdout);
    }
    let all: BTreeSet<Att> = expected.values().cloned().collect();
    let gc_then_read = |valid: &BTreeSet<Att>| {
        let out = gc(&net, valid);
        assert_eq!(out.code, 0, "GC: {}", out.stdout);
        read_store(&data.join("load")).0
    };
    assert_eq!(gc_then_read(&all), expected);
    assert_eq!(gc_then_read(&BTreeSet::new()), BTreeMap::new());
}
