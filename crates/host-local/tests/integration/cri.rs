//! End-to-end suite C: the Kubernetes path. A private containerd 1.6 (Debian
//! 12) with its CRI plugin runs pod sandboxes on a bridge network whose IPAM
//! is our `host-local`, driven over CRI v1 the way kubelet drives it:
//! RunPodSandbox with Kubernetes metadata, PodSandboxStatus, StopPodSandbox
//! (twice: kubelet retries), RemovePodSandbox. See `cri_world` for the
//! containerd setup and its cleanup.
//!
//! The CRI client (`cri_api`): tonic + prost, dialling the unix socket as
//! kubelet does, with the few messages the suite uses declared by hand with
//! their api.proto field numbers. Chosen over the alternatives because:
//! Debian 12 has no `cri-tools` (crictl); generating the whole CRI API
//! (the `k8s-cri` crate, or tonic-build on a vendored api.proto) needs protoc
//! and a build script that every `cargo test` would run, and compiles two
//! large generated modules for six calls. The suite lives in the one
//! integration binary (the project's rule: one binary running the real
//! executables, sharing `common`/`netns_util`): tonic's dependencies (no
//! server, no TLS) are compiled once per target directory (measured here:
//! 80 s of CPU, 4 min wall on the shared 2-core machine; nothing afterwards),
//! and the suite's own code adds little to each rebuild of the binary.
//!
//! Needs root, containerd, runc, busybox-static, the CNI plugins, iptables;
//! otherwise a loud SKIPPED (a panic under IPAM_REQUIRE_ALL=1).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::dir_names;
use crate::cri_api::*;
use crate::cri_world::*;
use crate::netns_util::*;

pub(crate) const POD_NS: &str = "cri-e2e-ns";

/// One running pod sandbox as the test sees it.
#[derive(Debug, Clone)]
pub(crate) struct Pod {
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) v4: String,
    pub(crate) v6: String,
    /// The netns path containerd passed to CNI (in containerd's mount namespace).
    netns: String,
}

fn sandbox_config(w: &CriWorld, name: &str, ports: Vec<PortMapping>) -> PodSandboxConfig {
    let uid = format!("uid-{name}-{}", std::process::id());
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: uid.clone(),
            namespace: POD_NS.into(),
            attempt: 0,
        }),
        hostname: name.into(),
        port_mappings: ports,
        // What kubelet sets on every sandbox.
        labels: [
            ("io.kubernetes.pod.name", name),
            ("io.kubernetes.pod.namespace", POD_NS),
            ("io.kubernetes.pod.uid", uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: w.cgroup_parent.clone(),
        }),
        ..Default::default()
    }
}

/// RunPodSandbox, then PodSandboxStatus (verbose) for its IPs and netns.
pub(crate) fn run_pod(w: &CriWorld, cri: &mut Cri, name: &str, ports: Vec<PortMapping>) -> Pod {
    let id = cri
        .run_pod_sandbox(sandbox_config(w, name, ports))
        .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e}\n{}", w.log_tail()));
    let st = cri.pod_sandbox_status(&id, true).unwrap();
    let status = st.status.expect("PodSandboxStatus without status");
    assert_eq!(status.state, SANDBOX_READY, "{name} not ready");
    let md = status.metadata.expect("status without metadata");
    assert_eq!((md.name.as_str(), md.namespace.as_str()), (name, POD_NS));
    let net = status.network.expect("status without network");
    let mut ips: Vec<String> = std::iter::once(net.ip.clone())
        .chain(net.additional_ips.iter().map(|p| p.ip.clone()))
        .collect();
    ips.retain(|i| !i.is_empty());
    assert_eq!(
        ips.len(),
        2,
        "{name}: want one IPv4 and one IPv6, got {ips:?}"
    );
    let (v4, v6) = if ips[0].contains(':') {
        (ips[1].clone(), ips[0].clone())
    } else {
        (ips[0].clone(), ips[1].clone())
    };
    assert!(
        v4.starts_with(&w.v4_prefix),
        "{name}: {v4} not in the v4 subnet"
    );
    assert!(
        v6.starts_with(&w.v6_prefix),
        "{name}: {v6} not in the v6 subnet"
    );
    assert_ne!(
        v4,
        format!("{}1", w.v4_prefix),
        "the gateway was handed out"
    );
    let info: Value = serde_json::from_str(st.info.get("info").expect("verbose info"))
        .expect("verbose info is JSON");
    let netns = info["runtimeSpec"]["linux"]["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["type"] == "network")
        .and_then(|n| n["path"].as_str())
        .unwrap_or_else(|| panic!("{name}: no network namespace path in {info}"))
        .to_owned();
    assert!(
        w.in_containerd_ns(&netns).exists(),
        "{name}: netns {netns} not found"
    );
    Pod {
        name: name.into(),
        id,
        v4,
        v6,
        netns,
    }
}

pub(crate) fn stop_twice_and_remove(cri: &mut Cri, p: &Pod) {
    for attempt in 1..=2 {
        cri.stop_pod_sandbox(&p.id)
            .unwrap_or_else(|e| panic!("StopPodSandbox #{attempt} {}: {e}", p.name));
    }
    let st = cri.pod_sandbox_status(&p.id, false).unwrap();
    assert_eq!(
        st.status.map(|s| s.state),
        Some(SANDBOX_NOTREADY),
        "{} still ready after stop",
        p.name
    );
    cri.remove_pod_sandbox(&p.id)
        .unwrap_or_else(|e| panic!("RemovePodSandbox {}: {e}", p.name));
}

fn netdir(w: &CriWorld) -> PathBuf {
    w.data_dir.join(&w.net)
}

/// The store holds exactly the pods' addresses, each `<sandboxID>\r\neth0`.
fn assert_store_is(w: &CriWorld, pods: &[&Pod], when: &str) {
    let exp: BTreeMap<String, (String, String)> = pods
        .iter()
        .flat_map(|p| {
            [&p.v4, &p.v6]
                .map(|ip| (ip.clone(), (p.id.clone(), "eth0".to_owned())))
                .into_iter()
        })
        .collect();
    assert_store(&netdir(w), &exp, when);
}

/// `nsenter --net=<pod netns> <args>`, the netns read through containerd's root.
fn in_pod(w: &CriWorld, p: &Pod, args: &[&str]) -> Run {
    let ns = w.in_containerd_ns(&p.netns);
    let mut a = vec![format!("--net={}", ns.display())];
    a.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    run("nsenter", &refs)
}

/// eth0 inside the pod holds exactly the pod's two addresses.
fn assert_configured_in_netns(w: &CriWorld, p: &Pod) {
    let r = in_pod(w, p, &["ip", "-j", "addr", "show", "dev", "eth0"]);
    assert!(r.ok, "{}: ip addr in netns: {}", p.name, r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let got: BTreeSet<String> = v[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    let want: BTreeSet<String> = [format!("{}/24", p.v4), format!("{}/64", p.v6)].into();
    assert_eq!(got, want, "{}: addresses on eth0 in its netns", p.name);
}

fn ping(w: &CriWorld, from: &Pod, to: &str) {
    let fam = if to.contains(':') { "-6" } else { "-4" };
    let mut last = None;
    for _ in 0..5 {
        // IPv6 may still be in duplicate address detection for a moment.
        let r = in_pod(w, from, &["ping", fam, "-c1", "-W2", to]);
        if r.ok {
            return;
        }
        last = Some(r);
        std::thread::sleep(std::time::Duration::from_millis(400));
    }
    let r = last.unwrap();
    panic!(
        "ping {} -> {to} failed: {}{}",
        from.name, r.stdout, r.stderr
    );
}

/// libcni cache entries (file names) mentioning `id`.
fn cache_entries(w: &CriWorld, id: &str) -> Vec<String> {
    dir_names(&w.results_dir)
        .into_iter()
        .filter(|n| n.contains(id))
        .collect()
}

/// Nothing of `gone` is left: reservations, netns, cache entries, iptables rules.
fn assert_released(w: &CriWorld, live: &[&Pod], gone: &[&Pod], when: &str) {
    assert_store_is(w, live, when);
    for p in gone {
        let ns = w.in_containerd_ns(&p.netns);
        assert!(!ns.exists(), "{when}: netns {} of {} left", p.netns, p.name);
        let c = cache_entries(w, &p.id);
        assert!(
            c.is_empty(),
            "{when}: libcni cache entries of {} left: {c:?}",
            p.name
        );
    }
    // Rules naming a removed pod (its ID in a comment, its address as
    // `-s/-d ADDR/32` or a DNAT target); with no pod left, any rule naming
    // the test network or its subnets.
    let ids: Vec<String> = gone.iter().map(|p| p.id.clone()).collect();
    let rules: Vec<String> = w
        .iptables_lines(&ids)
        .into_iter()
        .filter(|l| {
            live.is_empty()
                || gone.iter().any(|p| {
                    l.contains(&p.id)
                        || l.contains(&format!("{}/", p.v4))
                        || l.contains(&format!("{}:", p.v4))
                })
        })
        .collect();
    assert!(rules.is_empty(), "{when}: iptables rules left: {rules:#?}");
    let ports = bridge_ports(&w.bridge);
    assert_eq!(
        ports.len(),
        live.len(),
        "{when}: veths on {}: {ports:?}",
        w.bridge
    );
}

/// `ipamctl`, built beside our plugin by the same cargo run (the workspace
/// test run builds it); None after a loud skip when missing.
pub(crate) fn ipamctl_bin(what: &str) -> Option<PathBuf> {
    let p = crate::common::our_bin().with_file_name("ipamctl");
    let built = std::fs::metadata(&p).and_then(|m| m.modified());
    let Ok(built) = built else {
        skip(
            what,
            "target/<profile>/ipamctl not built (cargo build -p ipamctl)",
        );
        return None;
    };
    // `cargo test -p host-local` does not rebuild it: refuse a stale one.
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let newest_src = [crates.join("ipamctl/src"), crates.join("host-local/src")]
        .iter()
        .filter_map(|d| newest_mtime(d))
        .max();
    if newest_src.is_some_and(|src| src > built) {
        skip(
            what,
            "target/<profile>/ipamctl is older than its sources (cargo build -p ipamctl)",
        );
        return None;
    }
    eprintln!("{what}: using {}", p.display());
    Some(p)
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let t = if e.path().is_dir() {
            newest_mtime(&e.path())
        } else {
            e.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(t);
    }
    newest
}

pub(crate) fn ipamctl(bin: &Path, args: &[&str]) -> Run {
    run(&bin.display().to_string(), args)
}

#[test]
fn cri_e2e_two_pods_ping_and_release() {
    let what = "cri e2e (two pods)";
    if !cri_ready(what) {
        return;
    }
    let t0 = std::time::Instant::now();
    let w = CriWorld::start(1, true);
    let mut cri = w.cri();
    let host_port = 30000 + (std::process::id() % 20000) as i32;
    let a = run_pod(&w, &mut cri, "pod-a", vec![]);
    let b = run_pod(
        &w,
        &mut cri,
        "pod-b",
        vec![PortMapping {
            protocol: 0,
            container_port: 8080,
            host_port,
            host_ip: "127.0.0.1".into(),
        }],
    );
    assert!(
        a.v4 != b.v4 && a.v6 != b.v6,
        "duplicate address: {a:?} {b:?}"
    );
    assert_store_is(&w, &[&a, &b], "after two RunPodSandbox");
    for p in [&a, &b] {
        assert_configured_in_netns(&w, p);
        let c = cache_entries(&w, &p.id);
        assert!(
            c.contains(&format!("{}-{}-eth0", w.net, p.id)),
            "no libcni cache entry for {}: {c:?}",
            p.name
        );
    }
    // The rules the cleanup check looks for exist while the pods run.
    let rules = w.iptables_lines(std::slice::from_ref(&b.id));
    assert!(
        rules
            .iter()
            .any(|l| l.contains(&b.id) && l.contains("MASQUERADE")),
        "no masquerade rule for pod-b: {rules:#?}"
    );
    assert!(
        rules
            .iter()
            .any(|l| l.contains(&format!("--dport {host_port}"))),
        "no portmap rule for pod-b's hostPort {host_port}: {rules:#?}"
    );
    for (from, to) in [(&a, &b), (&b, &a)] {
        ping(&w, from, &to.v4);
        ping(&w, from, &to.v6);
    }
    if let Some(bin) = ipamctl_bin(what) {
        check_ipamctl_names_pods(&w, &bin, &[&a, &b]);
    }

    stop_twice_and_remove(&mut cri, &a);
    assert_released(&w, &[&b], &[&a], "after removing pod-a");
    stop_twice_and_remove(&mut cri, &b);
    assert_released(&w, &[], &[&a, &b], "after removing both");
    let left = cri.list_pod_sandbox().unwrap();
    assert!(left.is_empty(), "sandboxes left: {left:?}");
    eprintln!("{what}: passed in {:.1?}", t0.elapsed());
}

#[test]
fn cri_e2e_ten_rounds_of_three_pods() {
    let what = "cri e2e (10 rounds x 3 pods)";
    if !cri_ready(what) {
        return;
    }
    let t0 = std::time::Instant::now();
    let w = CriWorld::start(2, true);
    let mut cri = w.cri();
    let mut seen4 = BTreeSet::new();
    let mut seen6 = BTreeSet::new();
    for round in 0..10 {
        // One alone, then two at once (two connections, as two kubelet workers).
        let first = run_pod(&w, &mut cri, &format!("r{round}-p0"), vec![]);
        let (p1, p2) = std::thread::scope(|s| {
            let h: Vec<_> = (1..=2)
                .map(|i| {
                    let w = &w;
                    s.spawn(move || run_pod(w, &mut w.cri(), &format!("r{round}-p{i}"), vec![]))
                })
                .collect();
            let mut r = h.into_iter().map(|h| h.join().unwrap());
            (r.next().unwrap(), r.next().unwrap())
        });
        let pods = [&first, &p1, &p2];
        assert_store_is(&w, &pods, &format!("round {round} after start"));
        // host-local hands out round robin: 30 pods on a /24 never reuse.
        for p in pods {
            assert!(
                seen4.insert(p.v4.clone()),
                "round {round}: {} handed out twice",
                p.v4
            );
            assert!(
                seen6.insert(p.v6.clone()),
                "round {round}: {} handed out twice",
                p.v6
            );
        }
        if round == 0 {
            assert_configured_in_netns(&w, &p2);
            ping(&w, &p1, &p2.v4);
        }
        // Stop the concurrent pair concurrently, the first alone.
        std::thread::scope(|s| {
            for p in [&p1, &p2] {
                let w = &w;
                s.spawn(move || stop_twice_and_remove(&mut w.cri(), p));
            }
        });
        stop_twice_and_remove(&mut cri, &first);
        assert_released(&w, &[], &pods, &format!("round {round} after remove"));
    }
    eprintln!("{what}: passed in {:.1?}", t0.elapsed());
}

/// Objects of an ipamctl JSON report that describe one reservation.
pub(crate) fn reservation_objects(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    match v {
        Value::Object(m) if m.contains_key("address") => out.push(v),
        Value::Object(m) => m.values().for_each(|x| out.extend(reservation_objects(x))),
        Value::Array(a) => a.iter().for_each(|x| out.extend(reservation_objects(x))),
        _ => {}
    }
    out
}

/// `ipamctl show --results-dir <containerd's libcni cache>` names each
/// reservation's pod (namespace/name from K8S_POD_* in the cached CNI_ARGS),
/// and `ipamctl leaks` with that cache finds nothing while the pods live.
fn check_ipamctl_names_pods(w: &CriWorld, bin: &Path, pods: &[&Pod]) {
    let data = w.data_dir.display().to_string();
    let results = w.results_dir.display().to_string();
    let base = ["--data-dir", &data, "--results-dir", &results];
    let mut args = vec!["show", &w.net];
    args.extend_from_slice(&base);
    let text = ipamctl(bin, &args);
    assert_eq!(text.code, 0, "ipamctl show: {}{}", text.stdout, text.stderr);
    for p in pods {
        assert!(
            text.stdout.contains(&format!("{POD_NS}/{}", p.name)),
            "ipamctl show does not name {POD_NS}/{}:\n{}",
            p.name,
            text.stdout
        );
    }
    args.push("--json");
    let r = ipamctl(bin, &args);
    assert_eq!(r.code, 0, "ipamctl show --json: {}{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).expect("ipamctl show --json");
    let got: BTreeMap<String, (String, String, String)> = reservation_objects(&v)
        .into_iter()
        .map(|o| {
            let s = |k: &str| o[k].as_str().unwrap_or_default().to_owned();
            let pod = format!(
                "{}/{}",
                o["pod"]["namespace"].as_str().unwrap_or("?"),
                o["pod"]["name"].as_str().unwrap_or("?")
            );
            (s("address"), (s("containerId"), s("ifname"), pod))
        })
        .collect();
    let want: BTreeMap<String, (String, String, String)> = pods
        .iter()
        .flat_map(|p| {
            [&p.v4, &p.v6].map(|ip| {
                let pod = format!("{POD_NS}/{}", p.name);
                (ip.clone(), (p.id.clone(), "eth0".to_owned(), pod))
            })
        })
        .collect();
    assert_eq!(got, want, "ipamctl show --json:\n{}", r.stdout);
    let mut args = vec!["leaks", &w.net];
    args.extend_from_slice(&base);
    let r = ipamctl(bin, &args);
    assert_eq!(
        r.code, 0,
        "ipamctl leaks with live pods: {}{}",
        r.stdout, r.stderr
    );
}

#[test]
fn cri_e2e_ipamctl_finds_sandbox_removed_behind_containerds_back() {
    let what = "cri e2e (leak behind containerd's back)";
    if !cri_ready(what) {
        return;
    }
    let Some(bin) = ipamctl_bin(what) else {
        return;
    };
    let t0 = std::time::Instant::now();
    let mut w = CriWorld::start(3, false);
    let victim = run_pod(&w, &mut w.cri(), "victim", vec![]);
    // Gone behind CRI's back: its task killed and its container deleted
    // with ctr, then containerd crashes and restarts (no CNI DEL ever runs).
    let sock = w.socket.display().to_string();
    let ctr = |args: &[&str]| {
        let mut a = vec!["-a", sock.as_str(), "-n", "k8s.io"];
        a.extend_from_slice(args);
        run("ctr", &a)
    };
    let r = ctr(&["tasks", "kill", "-s", "SIGKILL", &victim.id]);
    assert!(r.ok, "ctr tasks kill: {}", r.stderr);
    for _ in 0..50 {
        let ls = ctr(&["tasks", "ls", "-q"]);
        if !ls.stdout.contains(&victim.id) {
            break;
        }
        // CRI deletes the exited task itself; if not yet, do it here.
        let _ = ctr(&["tasks", "delete", &victim.id]);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let r = ctr(&["containers", "delete", &victim.id]);
    assert!(r.ok, "ctr containers delete: {}", r.stderr);
    w.restart_containerd();
    let mut cri = w.cri();
    let live = run_pod(&w, &mut cri, "live", vec![]);
    let ids: Vec<String> = cri
        .list_pod_sandbox()
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(
        ids,
        std::slice::from_ref(&live.id),
        "containerd still lists the victim"
    );
    assert_store_is(
        &w,
        &[&victim, &live],
        "before ipamctl (the victim's addresses leaked)",
    );

    // What an operator runs: the runtime's sandbox IDs (crictl pods -q --no-trunc).
    let valid = w.tmp.join("valid.txt");
    std::fs::write(&valid, format!("{}\n", ids.join("\n"))).unwrap();
    let data = w.data_dir.display().to_string();
    let valid_s = valid.display().to_string();
    let base = ["--data-dir", data.as_str(), "--valid", valid_s.as_str()];
    let mut args = vec!["leaks", w.net.as_str()];
    args.extend_from_slice(&base);
    args.extend_from_slice(&["--json", "--no-trunc"]);
    let r = ipamctl(&bin, &args);
    assert_eq!(
        r.code, 1,
        "ipamctl leaks must report the leak: {}{}",
        r.stdout, r.stderr
    );
    let v: Value = serde_json::from_str(&r.stdout).expect("ipamctl leaks --json");
    let leaked: BTreeMap<String, String> = reservation_objects(&v)
        .into_iter()
        .map(|o| {
            let s = |k: &str| o[k].as_str().unwrap_or_default().to_owned();
            (s("address"), s("containerId"))
        })
        .collect();
    let want: BTreeMap<String, String> = [
        (victim.v4.clone(), victim.id.clone()),
        (victim.v6.clone(), victim.id.clone()),
    ]
    .into();
    assert_eq!(leaked, want, "ipamctl leaks --json:\n{}", r.stdout);

    // Reclaimed with gc; the live pod keeps its addresses.
    let mut args = vec!["gc", w.net.as_str()];
    args.extend_from_slice(&base);
    // --min-age 0s: the leak is seconds old here (the default 5m guard
    // protects pods started after the list was made).
    args.extend_from_slice(&["--min-age", "0s", "--yes"]);
    let r = ipamctl(&bin, &args);
    assert_eq!(r.code, 0, "ipamctl gc: {}{}", r.stdout, r.stderr);
    assert_store_is(&w, &[&live], "after ipamctl gc");
    stop_twice_and_remove(&mut cri, &live);
    assert_store_is(&w, &[], "after removing the live pod");
    let ports = bridge_ports(&w.bridge);
    assert!(ports.is_empty(), "veths left on {}: {ports:?}", w.bridge);
    eprintln!("{what}: passed in {:.1?}", t0.elapsed());
}
