//! End-to-end suite B: podman (Debian 12: 4.3, CNI backend) running busybox
//! containers on a CNI network whose IPAM is our `host-local`.
//!
//! Every podman call uses the test's own containers.conf (CONTAINERS_CONF),
//! storage.conf, --root/--runroot (vfs driver) and network config dir, all in a
//! tempdir; the machine's /etc is untouched. cni_plugin_dirs lists our build
//! directory first; the network's IPAM dataDir is only written by the plugin
//! found there, so reservation files in it (holding podman's container IDs)
//! prove our binary did the work. The bridge has no address on the host
//! (isGateway false): traffic only flows between the test's containers.
//!
//! With HOST_LOCAL_E2E_INSTALLED=1 (scripts/package-test.sh, package
//! host-local-rs installed) containers.conf sets no cni_plugin_dirs: podman
//! searches its defaults and must find the package's /usr/lib/cni/host-local.
//!
//! Needs root, podman, runc, busybox-static, /usr/lib/cni/bridge; otherwise a
//! loud SKIPPED (a panic under IPAM_REQUIRE_ALL=1).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::netns_util::*;

const BUSYBOX: &str = "/bin/busybox";
const IMAGE: &str = "localhost/hle2e-busybox:latest";

struct Podman {
    tmp: tempfile::TempDir,
    net: String,
    bridge: String,
    subnet_prefix: String, // "10.244.210."
    data_net_dir: PathBuf,
    root: PathBuf,
}

fn podman_ready(what: &str) -> bool {
    if !preflight(
        what,
        &["podman", "runc", "ip"],
        &[BUSYBOX, "/usr/lib/cni/bridge"],
    ) {
        return false;
    }
    // The image needs a static busybox (the dynamic one would lack its libc).
    let st = run("dpkg-query", &["-W", "-f=${Status}", "busybox-static"]);
    if !st.stdout.contains("install ok installed") {
        return skip(
            what,
            "package busybox-static not installed (see .ci/e2e-deps.sh)",
        );
    }
    true
}

impl Podman {
    /// A private podman world with one CNI network `hle2e-<id>` on
    /// 10.244.<octet>.0/24 and the busybox image imported.
    fn new(octet: u8) -> Podman {
        let tmp = tempfile::Builder::new()
            .prefix("hle2e-podman-")
            .tempdir()
            .unwrap();
        let t = tmp.path();
        let id = uniq("hlp");
        let net = format!("hle2e-{id}");
        let data_dir = t.join("data");
        let netconf_dir = t.join("net.d");
        let root = t.join("root");
        for d in [&data_dir, &netconf_dir, &t.join("tmp"), &t.join("img/bin")] {
            std::fs::create_dir_all(d).unwrap();
        }
        let plugin_dirs_line = if installed_mode() {
            let used = assert_installed_package_found_first();
            eprintln!(
                "podman e2e: default cni_plugin_dirs, host-local = {} (package)",
                used.display()
            );
            String::new()
        } else {
            let dirs = vec![plugin_dir(), PathBuf::from(SYS_CNI_DIR)];
            let used = assert_ours_found_first(&dirs);
            eprintln!(
                "podman e2e: cni_plugin_dirs {dirs:?}, host-local = {}",
                used.display()
            );
            let dirs_toml = dirs
                .iter()
                .map(|d| format!("{:?}", d.display().to_string()))
                .collect::<Vec<_>>()
                .join(", ");
            format!("cni_plugin_dirs = [{dirs_toml}]\n")
        };
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        std::fs::write(
            t.join("containers.conf"),
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n\
                 [network]\n\
                 network_backend = \"cni\"\n\
                 {plugin_dirs_line}\
                 network_config_dir = {}\n\
                 [engine]\n\
                 runtime = \"runc\"\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 events_logfile_path = {}\n\
                 tmp_dir = {}\n",
                q(&netconf_dir),
                q(&t.join("events.log")),
                q(&t.join("tmp")),
            ),
        )
        .unwrap();
        std::fs::write(
            t.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = {}\nrunroot = {}\n",
                q(&root),
                q(&t.join("runroot"))
            ),
        )
        .unwrap();
        let bridge = id.clone();
        let subnet_prefix = format!("10.244.{octet}.");
        let conflist = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": net,
            "plugins": [{
                "type": "bridge",
                "bridge": bridge,
                "isGateway": false,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": data_dir,
                    "ranges": [[{ "subnet": format!("{subnet_prefix}0/24") }]]
                }
            }]
        });
        std::fs::write(
            netconf_dir.join(format!("{net}.conflist")),
            conflist.to_string(),
        )
        .unwrap();

        let p = Podman {
            data_net_dir: data_dir.join(&net),
            tmp,
            net,
            bridge,
            subnet_prefix,
            root,
        };
        // Image: a directory holding only a static busybox and its applet links.
        let img = p.tmp.path().join("img");
        std::fs::copy(BUSYBOX, img.join("bin/busybox")).unwrap();
        for applet in ["sh", "sleep", "ping", "ip"] {
            std::os::unix::fs::symlink("busybox", img.join("bin").join(applet)).unwrap();
        }
        let r = run_cmd(
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "tar -C '{}' -c . | podman {} import - {IMAGE}",
                    img.display(),
                    p.global_args().join(" ")
                ))
                .envs(p.envs()),
        );
        assert!(r.ok, "podman import failed: {}{}", r.stdout, r.stderr);
        let nets = p.must(&["network", "ls", "--format", "{{.Name}}"]);
        assert!(
            nets.lines().any(|l| l == p.net),
            "podman does not see network {}: {nets}",
            p.net
        );
        p
    }

    fn envs(&self) -> Vec<(String, PathBuf)> {
        let t = self.tmp.path();
        vec![
            ("CONTAINERS_CONF".into(), t.join("containers.conf")),
            ("CONTAINERS_STORAGE_CONF".into(), t.join("storage.conf")),
        ]
    }

    fn global_args(&self) -> Vec<String> {
        let t = self.tmp.path();
        vec![
            "--root".into(),
            self.root.display().to_string(),
            "--runroot".into(),
            t.join("runroot").display().to_string(),
            "--storage-driver".into(),
            "vfs".into(),
            "--network-config-dir".into(),
            t.join("net.d").display().to_string(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "file".into(),
            "--runtime".into(),
            "runc".into(),
        ]
    }

    fn podman(&self, args: &[&str]) -> Run {
        run_cmd(
            Command::new("podman")
                .args(self.global_args())
                .args(args)
                .envs(self.envs()),
        )
    }

    fn must(&self, args: &[&str]) -> String {
        let r = self.podman(args);
        assert!(
            r.ok,
            "`podman {}` failed ({}): {}{}",
            args.join(" "),
            r.code,
            r.stdout,
            r.stderr
        );
        r.stdout
    }

    /// Start a detached container on the test network; returns its full ID.
    fn start(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            &self.net,
            "--cap-add",
            "NET_RAW",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "sleep", "600"]);
        self.must(&args).trim().to_owned()
    }

    /// (ID, IPv4 address on our network) from `podman inspect`.
    fn inspect(&self, name: &str) -> (String, String) {
        let v: Value =
            serde_json::from_str(&self.must(&["inspect", "--type", "container", name])).unwrap();
        let c = &v[0];
        let ip = c["NetworkSettings"]["Networks"][&self.net]["IPAddress"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        (c["Id"].as_str().unwrap().to_owned(), ip)
    }

    fn ping(&self, from: &str, target: &str) -> Run {
        self.podman(&["exec", from, "ping", "-c1", "-W2", target])
    }

    fn rm(&self, name: &str) {
        self.must(&["rm", "-f", "-t0", name]);
    }

    /// Assert the store holds exactly the given containers' addresses.
    fn assert_store_is(&self, live: &[(&str, &str)], when: &str) {
        let exp: BTreeMap<String, (String, String)> = live
            .iter()
            .map(|(id, ip)| (ip.to_string(), (id.to_string(), "eth0".to_owned())))
            .collect();
        assert_store(&self.data_net_dir, &exp, when);
    }

    fn assert_in_subnet(&self, ip: &str) {
        assert!(
            ip.starts_with(&self.subnet_prefix),
            "address {ip:?} not in {}0/24",
            self.subnet_prefix
        );
        assert_ne!(
            ip,
            format!("{}1", self.subnet_prefix),
            "the gateway was handed out"
        );
    }

    /// Nothing left: no reservations, no veth on the bridge.
    fn assert_clean(&self, when: &str) {
        self.assert_store_is(&[], when);
        let ports = bridge_ports(&self.bridge);
        assert!(
            ports.is_empty(),
            "{when}: veths still on bridge {}: {ports:?}",
            self.bridge
        );
        let ps = self.must(&["ps", "-aq"]);
        assert!(ps.trim().is_empty(), "{when}: containers left: {ps}");
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-af", "-t0"]);
        let _ = self.podman(&["rmi", "-af"]);
        if run("ip", &["link", "show", &self.bridge]).ok {
            let _ = run("ip", &["link", "del", &self.bridge]);
        }
        // libcni's cache of results for our network, in the machine's default dir.
        if let Ok(rd) = std::fs::read_dir("/var/lib/cni/results") {
            for e in rd.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{}-", self.net))
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        umount_under(self.tmp.path());
        // TempDir removes the files.
    }
}

#[test]
fn podman_e2e_two_containers_ping_and_release() {
    let what = "podman e2e (two containers)";
    if !podman_ready(what) {
        return;
    }
    let t0 = std::time::Instant::now();
    let p = Podman::new(210);
    p.start("hle2e-a", &[]);
    p.start("hle2e-b", &[]);
    let (ida, ipa) = p.inspect("hle2e-a");
    let (idb, ipb) = p.inspect("hle2e-b");
    p.assert_in_subnet(&ipa);
    p.assert_in_subnet(&ipb);
    assert_ne!(ipa, ipb, "both containers got the same address");
    // Our dataDir holds exactly the two reservations, naming podman's container IDs.
    p.assert_store_is(&[(&ida, &ipa), (&idb, &ipb)], "after two runs");

    for (from, to) in [("hle2e-a", &ipb), ("hle2e-b", &ipa)] {
        let r = p.ping(from, to);
        assert!(r.ok, "ping {from} -> {to} failed: {}{}", r.stdout, r.stderr);
    }

    p.rm("hle2e-a");
    p.assert_store_is(&[(&idb, &ipb)], "after rm of a");
    p.rm("hle2e-b");
    p.assert_clean("after rm of both");
    eprintln!("{what}: passed in {:.1?}", t0.elapsed());
}

#[test]
fn podman_e2e_static_ip() {
    let what = "podman e2e (--ip)";
    if !podman_ready(what) {
        return;
    }
    let t0 = std::time::Instant::now();
    let p = Podman::new(211);
    let want = "10.244.211.77";
    p.start("hle2e-s", &["--ip", want]);
    let (ids, ips) = p.inspect("hle2e-s");
    assert_eq!(ips, want, "--ip {want} not honoured");
    p.assert_store_is(&[(&ids, want)], "after --ip");

    // The same address again must be refused and leave nothing reserved.
    let r = p.podman(&[
        "run",
        "-d",
        "--name",
        "hle2e-dup",
        "--network",
        &p.net,
        "--ip",
        want,
        IMAGE,
        "sleep",
        "600",
    ]);
    eprintln!(
        "duplicate --ip outcome ({}): {}{}",
        r.code, r.stdout, r.stderr
    );
    let dup_ip = if r.ok {
        p.inspect("hle2e-dup").1
    } else {
        String::new()
    };
    assert!(
        !r.ok,
        "a second container got the taken address {want} (it got {dup_ip:?})"
    );
    assert!(
        r.stderr.contains("failed (add)"),
        "the duplicate was refused, but not by the CNI ADD: {}",
        r.stderr
    );
    let _ = p.podman(&["rm", "-f", "-t0", "hle2e-dup"]);
    p.assert_store_is(&[(&ids, want)], "after the refused duplicate");

    // A dynamic container avoids it; the two can talk.
    p.start("hle2e-d", &[]);
    let (idd, ipd) = p.inspect("hle2e-d");
    p.assert_in_subnet(&ipd);
    assert_ne!(ipd, want);
    p.assert_store_is(&[(&ids, want), (&idd, &ipd)], "after the dynamic one");
    let r = p.ping("hle2e-d", want);
    assert!(r.ok, "ping -> {want} failed: {}{}", r.stdout, r.stderr);

    // rm releases: the address can be taken again.
    p.rm("hle2e-s");
    p.assert_store_is(&[(&idd, &ipd)], "after rm of the --ip container");
    p.start("hle2e-s2", &["--ip", want]);
    let (ids2, ips2) = p.inspect("hle2e-s2");
    assert_eq!(ips2, want);
    p.assert_store_is(
        &[(&ids2, want), (&idd, &ipd)],
        "after re-using the released address",
    );
    p.rm("hle2e-s2");
    p.rm("hle2e-d");
    p.assert_clean("at the end");
    eprintln!("{what}: passed in {:.1?}", t0.elapsed());
}

#[test]
fn podman_e2e_churn_20_rounds() {
    let what = "podman e2e (20 rounds)";
    if !podman_ready(what) {
        return;
    }
    let t0 = std::time::Instant::now();
    let p = Podman::new(212);
    p.start("hle2e-srv", &[]);
    let (idsrv, ipsrv) = p.inspect("hle2e-srv");
    p.assert_in_subnet(&ipsrv);
    let mut seen = BTreeSet::new();
    for round in 0..20 {
        let name = format!("hle2e-c{round}");
        p.start(&name, &[]);
        let (id, ip) = p.inspect(&name);
        p.assert_in_subnet(&ip);
        assert_ne!(ip, ipsrv, "round {round}: got the server's address");
        // host-local hands out addresses round robin: no reuse within 20 rounds on a /24.
        assert!(
            seen.insert(ip.clone()),
            "round {round}: address {ip} handed out again"
        );
        p.assert_store_is(
            &[(&idsrv, &ipsrv), (&id, &ip)],
            &format!("round {round} after start"),
        );
        let r = p.ping(&name, &ipsrv);
        assert!(
            r.ok,
            "round {round}: ping -> {ipsrv} failed: {}{}",
            r.stdout, r.stderr
        );
        let r = p.ping("hle2e-srv", &ip);
        assert!(
            r.ok,
            "round {round}: ping srv -> {ip} failed: {}{}",
            r.stdout, r.stderr
        );
        p.rm(&name);
        p.assert_store_is(&[(&idsrv, &ipsrv)], &format!("round {round} after rm"));
    }
    p.rm("hle2e-srv");
    p.assert_clean("after 20 rounds");
    eprintln!("{what}: passed in {:.1?}", t0.elapsed());
}
