//! A private containerd (Debian 12: 1.6) for the `cri` suite, started and
//! torn down by the test: its own config, root, state, socket and CNI
//! directories under one temp dir `/tmp/cri-e2e-*`, in its own mount
//! namespace (`unshare -m`) with a private tmpfs on /run (1.6's shims put
//! their sockets under /run/containerd whatever the state dir is) and the
//! temp dir's `cnicache` bind-mounted on /var/lib/cni (libcni's result cache,
//! which containerd 1.6 cannot relocate). The machine's containerd service and
//! /run/containerd are never touched.
//!
//! Cleanup happens on drop (also when a test panics): every sandbox is
//! stopped and removed through CRI, containerd is killed, then
//! `cri_cleanup::teardown_dir` removes what is left (shims and pods by PID,
//! the bridge, iptables rules naming the test network, cgroups, the dir). A run that was interrupted (^C) leaves
//! its temp dir with an `owner` PID behind: the next run's `CriWorld::start`
//! sweeps every such dir whose owner is gone.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cri_api::Cri;
use crate::cri_cleanup::{remove_idle_hostport_chains, sweep_stale, teardown_dir};
use crate::netns_util::*;

const BUSYBOX: &str = "/bin/busybox";
const PAUSE_IMAGE: &str = "localhost/cri-e2e-pause:1";
const TMP_PREFIX: &str = "cri-e2e-";
/// Per-call deadline of the CRI client (RunPodSandbox takes ~0.4 s here).
pub const CRI_TIMEOUT: Duration = Duration::from_secs(60);

/// Root, tools and packages the suite needs; a loud skip otherwise.
pub fn cri_ready(what: &str) -> bool {
    if !preflight(
        what,
        &[
            "containerd",
            "ctr",
            "runc",
            "unshare",
            "nsenter",
            "ip",
            "ping",
            "iptables-save",
            "ip6tables-save",
            "tar",
            "sha256sum",
        ],
        &[
            BUSYBOX,
            "/usr/lib/cni/bridge",
            "/usr/lib/cni/loopback",
            "/usr/lib/cni/portmap",
        ],
    ) {
        return false;
    }
    let st = run("dpkg-query", &["-W", "-f=${Status}", "busybox-static"]);
    if !st.stdout.contains("install ok installed") {
        return skip(what, "package busybox-static not installed (.ci/packages)");
    }
    true
}

/// The network a world serves: bridge `cri<id>`, 10.231.<octet>.0/24 and
/// fd00:231:<octet>::/64, IPAM our host-local with its own dataDir.
pub struct CriWorld {
    pub tmp: PathBuf,
    pub net: String,
    pub bridge: String,
    pub v4_prefix: String,
    pub v6_prefix: String,
    pub data_dir: PathBuf,
    /// libcni's result cache as containerd sees it at /var/lib/cni/results.
    pub results_dir: PathBuf,
    pub socket: PathBuf,
    /// The cgroup parent of the test's pods (`/cri-e2e-<id>` in every
    /// hierarchy), instead of containerd's shared default `/k8s.io`.
    pub cgroup_parent: String,
    containerd: Option<Child>,
    /// portmap's shared chains did not exist before this world.
    hostport_chains_new: bool,
}

fn q(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

impl CriWorld {
    /// A fresh world; `ip_masq` adds bridge's masquerade rules (iptables).
    pub fn start(octet: u8, ip_masq: bool) -> CriWorld {
        sweep_stale(TMP_PREFIX);
        let tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempdir()
            .unwrap()
            .keep();
        let id = uniq("cri");
        let w = CriWorld {
            net: format!("cri-e2e-{id}"),
            cgroup_parent: format!("/cri-e2e-{id}"),
            bridge: id,
            v4_prefix: format!("10.231.{octet}."),
            v6_prefix: format!("fd00:231:{octet}::"),
            data_dir: tmp.join("data"),
            results_dir: tmp.join("cnicache/results"),
            socket: tmp.join("containerd.sock"),
            tmp,
            containerd: None,
            hostport_chains_new: !run("iptables", &["-t", "nat", "-S", "CNI-HOSTPORT-DNAT"]).ok,
        };
        std::fs::write(w.tmp.join("owner"), std::process::id().to_string()).unwrap();
        std::fs::write(w.tmp.join("bridge"), &w.bridge).unwrap();
        std::fs::write(w.tmp.join("net"), &w.net).unwrap();
        std::fs::write(w.tmp.join("cgroup"), &w.cgroup_parent).unwrap();
        let mut w = w;
        w.write_cni(ip_masq);
        w.write_config();
        w.build_image();
        w.spawn_containerd();
        w.import_image();
        w
    }

    /// bin_dir: our host-local (symlink to the build) beside Debian's
    /// bridge, loopback and portmap; conf_dir: one conflist.
    fn write_cni(&self, ip_masq: bool) {
        let bin = self.tmp.join("cni-bin");
        let conf = self.tmp.join("net.d");
        for d in [&bin, &conf, &self.data_dir, &self.tmp.join("cnicache")] {
            std::fs::create_dir_all(d).unwrap();
        }
        let ours = plugin_dir().join("host-local");
        std::os::unix::fs::symlink(&ours, bin.join("host-local")).unwrap();
        for p in ["bridge", "loopback", "portmap"] {
            std::os::unix::fs::symlink(Path::new(SYS_CNI_DIR).join(p), bin.join(p)).unwrap();
        }
        assert_ours_found_first(&[bin]);
        // Kubernetes' usual bridge conflist. Debian's bridge 1.1.1 refuses
        // promiscMode with hairpinMode: hairpin only.
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.net,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": ip_masq,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": self.data_dir,
                        "ranges": [
                            [{ "subnet": format!("{}0/24", self.v4_prefix) }],
                            [{ "subnet": format!("{}/64", self.v6_prefix) }]
                        ],
                        "routes": [{ "dst": "0.0.0.0/0" }, { "dst": "::/0" }]
                    }
                },
                { "type": "portmap", "capabilities": { "portMappings": true } }
            ]
        });
        std::fs::write(conf.join("10-cri-e2e.conflist"), conflist.to_string()).unwrap();
    }

    fn write_config(&self) {
        let t = &self.tmp;
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        let cfg = format!(
            "version = 2\n\
             root = {root}\n\
             state = {state}\n\
             disabled_plugins = [\"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.zfs\", \
             \"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.snapshotter.v1.aufs\", \
             \"io.containerd.internal.v1.tracing\", \"io.containerd.tracing.processor.v1.otlp\"]\n\
             [grpc]\n  address = {sock}\n\
             [ttrpc]\n  address = {ttrpc}\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {opt}\n\
             [{cri}]\n\
             \x20 sandbox_image = \"{PAUSE_IMAGE}\"\n\
             \x20 restrict_oom_score_adj = true\n\
             \x20 netns_mounts_under_state_dir = true\n\
             \x20 disable_tcp_service = true\n\
             \x20 stream_server_address = \"127.0.0.1\"\n\
             [{cri}.containerd]\n\
             \x20 snapshotter = \"native\"\n\
             \x20 default_runtime_name = \"runc\"\n\
             [{cri}.containerd.runtimes.runc]\n\
             \x20 runtime_type = \"io.containerd.runc.v2\"\n\
             [{cri}.cni]\n\
             \x20 bin_dir = {bin}\n\
             \x20 conf_dir = {conf}\n\
             \x20 max_conf_num = 1\n",
            root = q(&t.join("root")),
            state = q(&t.join("state")),
            sock = q(&self.socket),
            ttrpc = q(&t.join("containerd.sock.ttrpc")),
            opt = q(&t.join("opt")),
            bin = q(&t.join("cni-bin")),
            conf = q(&t.join("net.d")),
        );
        std::fs::write(t.join("config.toml"), cfg).unwrap();
    }

    /// The sandbox ("pause") image: one layer holding a static busybox,
    /// running `sleep`, as a docker-archive tarball for `ctr images import`.
    fn build_image(&self) {
        let img = self.tmp.join("img");
        let rootfs = img.join("rootfs/bin");
        let arc = img.join("archive");
        std::fs::create_dir_all(&rootfs).unwrap();
        std::fs::create_dir_all(&arc).unwrap();
        std::fs::copy(BUSYBOX, rootfs.join("busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", rootfs.join("sleep")).unwrap();
        let layer = arc.join("layer.tar");
        must(
            "tar",
            &[
                "-C",
                &img.join("rootfs").display().to_string(),
                "--numeric-owner",
                "--owner=0",
                "--group=0",
                "-cf",
                &layer.display().to_string(),
                ".",
            ],
        );
        let sum = must("sha256sum", &[&layer.display().to_string()]);
        let digest = sum.split_whitespace().next().unwrap();
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Entrypoint": ["/bin/sleep", "2147483647"], "WorkingDir": "/" },
            "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{digest}")] }
        });
        std::fs::write(arc.join("config.json"), config.to_string()).unwrap();
        let manifest = serde_json::json!([{
            "Config": "config.json",
            "RepoTags": [PAUSE_IMAGE],
            "Layers": ["layer.tar"]
        }]);
        std::fs::write(arc.join("manifest.json"), manifest.to_string()).unwrap();
        must(
            "tar",
            &[
                "-C",
                &arc.display().to_string(),
                "-cf",
                &img.join("image.tar").display().to_string(),
                "manifest.json",
                "config.json",
                "layer.tar",
            ],
        );
    }

    fn spawn_containerd(&mut self) {
        let t = &self.tmp;
        let script = format!(
            "set -e; mount -t tmpfs -o mode=0755,size=64m cri-e2e-run /run; \
             mkdir -p /var/lib/cni; mount --bind '{cache}' /var/lib/cni; \
             exec containerd --config '{cfg}'",
            cache = t.join("cnicache").display(),
            cfg = t.join("config.toml").display(),
        );
        let log = std::fs::File::create(t.join("containerd.log")).unwrap();
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // If the test process dies (^C), containerd dies with it; its shims
        // and pods are swept by the next run (see sweep_stale).
        // SAFETY: prctl is async-signal-safe and touches no shared state.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn unshare containerd");
        std::fs::write(t.join("containerd.pid"), child.id().to_string()).unwrap();
        self.containerd = Some(child);
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.containerd.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "containerd exited ({st}) during start:\n{}",
                    self.log_tail()
                );
            }
            if self.socket.exists() {
                if let Ok(mut c) = Cri::connect(&self.socket, Duration::from_secs(5)) {
                    if let Ok(v) = c.version() {
                        eprintln!(
                            "cri e2e: {} {} (CRI {}) in {}",
                            v.runtime_name,
                            v.runtime_version,
                            v.runtime_api_version,
                            self.tmp.display()
                        );
                        return;
                    }
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "containerd did not answer CRI Version within 30 s:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn import_image(&self) {
        let r = run(
            "ctr",
            &[
                "-a",
                &self.socket.display().to_string(),
                "-n",
                "k8s.io",
                "images",
                "import",
                "--snapshotter",
                "native",
                &self.tmp.join("img/image.tar").display().to_string(),
            ],
        );
        assert!(r.ok, "ctr images import: {}{}", r.stdout, r.stderr);
    }

    /// Kills containerd (SIGKILL, like a crash) and starts it again on the
    /// same root and state, in a fresh mount namespace.
    pub fn restart_containerd(&mut self) {
        if let Some(mut c) = self.containerd.take() {
            c.kill().expect("kill containerd");
            c.wait().expect("wait containerd");
        }
        self.spawn_containerd();
    }

    pub fn containerd_pid(&self) -> u32 {
        self.containerd.as_ref().unwrap().id()
    }

    /// A path of containerd's mount namespace, seen from ours.
    pub fn in_containerd_ns(&self, p: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{p}", self.containerd_pid()))
    }

    pub fn cri(&self) -> Cri {
        Cri::connect(&self.socket, CRI_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.tmp.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Every iptables/ip6tables-save line naming this test (its network
    /// name in bridge's and portmap's comments, its subnets, or `ids`).
    pub fn iptables_lines(&self, ids: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for tool in ["iptables-save", "ip6tables-save"] {
            let r = run(tool, &[]);
            assert!(r.ok, "{tool}: {}", r.stderr);
            for l in r.stdout.lines() {
                if l.contains(&self.net)
                    || l.contains(&self.v4_prefix)
                    || l.contains(&self.v6_prefix)
                    || ids.iter().any(|id| l.contains(id.as_str()))
                {
                    out.push(format!("{tool}: {l}"));
                }
            }
        }
        out
    }
}

impl Drop for CriWorld {
    fn drop(&mut self) {
        // Through CRI first, so that CNI DEL undoes what ADD did.
        if let Ok(mut c) = Cri::connect(&self.socket, Duration::from_secs(10)) {
            for p in c.list_pod_sandbox().unwrap_or_default() {
                if let Err(e) = c.stop_pod_sandbox(&p.id) {
                    eprintln!("cleanup: stop {}: {e}", p.id);
                }
                if let Err(e) = c.remove_pod_sandbox(&p.id) {
                    eprintln!("cleanup: remove {}: {e}", p.id);
                }
            }
        }
        if let Some(mut c) = self.containerd.take() {
            let _ = c.kill(); // Err only when it already exited.
            let _ = c.wait();
        }
        teardown_dir(&self.tmp);
        if self.hostport_chains_new {
            remove_idle_hostport_chains();
        }
    }
}
