//! Real etcd members for tests and the benchmark (Debian `etcd-server`,
//! /usr/bin/etcd; health checks through `etcdctl` from `etcd-client`):
//! a single member or a cluster of members on free loopback ports, each in
//! its own temporary directory, killed on drop. Members can be killed,
//! restarted, stopped (SIGSTOP: a hung member) and continued; plain HTTP or
//! TLS with client certificate authentication; extra etcd flags (e.g.
//! `--quota-backend-bytes`); etcd's own authentication (users and roles).
//!
//! Used by the integration tests, ipamctl's tests and `ipam-bench`.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ETCD_BIN: &str = "/usr/bin/etcd";
pub const ETCDCTL_BIN: &str = "/usr/bin/etcdctl";
const SETPRIV_BIN: &str = "/usr/bin/setpriv";

/// Whether etcd and etcdctl are installed.
pub fn etcd_installed() -> bool {
    Path::new(ETCD_BIN).exists() && Path::new(ETCDCTL_BIN).exists()
}

/// Server-side TLS of every member: the CA that signed the client
/// certificates (client-cert-auth is on) and the members' certificate.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A client certificate etcdctl presents for health checks.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running etcd cluster (one member or more), stopped on drop.
pub struct Cluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    tls: Option<ServerTls>,
    token: String,
    /// More etcd flags for every member.
    extra: Vec<String>,
    /// root's password once authentication is enabled (etcdctl then uses it).
    root_password: Option<String>,
}

/// A port nobody listens on now (the kernel's pick), with its listener kept
/// until the caller drops it so two picks never coincide.
fn free_port() -> (u16, TcpListener) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    (l.local_addr().expect("local addr").port(), l)
}

impl Cluster {
    /// `n` members over plain HTTP.
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, None, &std::env::temp_dir())
    }

    /// `n` members over plain HTTP, their data in a new directory under `parent`.
    pub fn start_in(n: usize, parent: &Path) -> Cluster {
        Self::start_with(n, None, parent)
    }

    /// `n` members serving clients over TLS and requiring client certificates.
    pub fn start_tls(n: usize, tls: ServerTls) -> Cluster {
        Self::start_with(n, Some(tls), &std::env::temp_dir())
    }

    /// `n` members over plain HTTP, each started with the etcd flags `extra`
    /// as well (e.g. `["--quota-backend-bytes", "4194304"]`).
    pub fn start_args(n: usize, extra: &[&str]) -> Cluster {
        Self::start_full(n, None, &std::env::temp_dir(), extra)
    }

    /// `n` members in a new directory under `parent`, with the etcd flags `extra`.
    pub fn start_args_in(n: usize, parent: &Path, extra: &[&str]) -> Cluster {
        Self::start_full(n, None, parent, extra)
    }

    fn start_with(n: usize, tls: Option<ServerTls>, parent: &Path) -> Cluster {
        Self::start_full(n, tls, parent, &[])
    }

    fn start_full(n: usize, tls: Option<ServerTls>, parent: &Path, extra: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("etcd-test-")
            .tempdir_in(parent)
            .expect("temp dir for etcd");
        let mut holds = Vec::new();
        let mut members = Vec::new();
        for i in 0..n {
            let (client_port, a) = free_port();
            let (peer_port, b) = free_port();
            holds.push(a);
            holds.push(b);
            members.push(Member {
                name: format!("m{i}"),
                client_port,
                peer_port,
                data: dir.path().join(format!("m{i}.data")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            });
        }
        drop(holds);
        let token = format!(
            "etcd-test-{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy()
        );
        let mut c = Cluster {
            dir,
            members,
            tls,
            token,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            root_password: None,
        };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_healthy(i);
        }
        c
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize) {
        let initial = self.initial_cluster();
        let scheme = self.scheme();
        let m = &self.members[i];
        let client = format!("{scheme}://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("etcd log file");
        // Through setpriv (util-linux) when present: the member is killed
        // when the thread that started it dies, even if the test process is
        // killed before its `Drop` runs. setpriv execs etcd (same PID).
        let mut cmd = if Path::new(SETPRIV_BIN).exists() {
            let mut c = Command::new(SETPRIV_BIN);
            c.args(["--pdeathsig", "KILL", "--", ETCD_BIN]);
            c
        } else {
            Command::new(ETCD_BIN)
        };
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", "new"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.cert)
                .arg("--key-file")
                .arg(&t.key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        cmd.args(&self.extra);
        let child = cmd.spawn().expect("spawn /usr/bin/etcd");
        self.members[i].child = Some(child);
    }

    /// Client URLs of every member (killed ones included).
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    pub fn endpoint(&self, i: usize) -> String {
        format!(
            "{}://127.0.0.1:{}",
            self.scheme(),
            self.members[i].client_port
        )
    }

    /// Number of members (running or killed).
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// The directory holding the members' data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every key starting with `prefix` and its value, read with etcdctl
    /// (asserting that it worked).
    pub fn dump(&self, prefix: &str) -> std::collections::BTreeMap<String, String> {
        let (ok, out) = self.etcdctl(&["get", prefix, "--prefix"]);
        assert!(ok, "etcdctl get {prefix} --prefix: {out}");
        let lines: Vec<&str> = out.lines().collect();
        lines
            .chunks(2)
            .map(|kv| (kv[0].to_string(), kv.get(1).unwrap_or(&"").to_string()))
            .collect()
    }

    /// `etcdctl` against every running member, with the client certificate
    /// when TLS is on; returns (success, stdout + stderr).
    pub fn etcdctl(&self, args: &[&str]) -> (bool, String) {
        let eps: Vec<String> = (0..self.members.len())
            .filter(|&i| self.members[i].child.is_some())
            .map(|i| self.endpoint(i))
            .collect();
        self.etcdctl_at(&eps.join(","), args)
    }

    fn etcdctl_at(&self, endpoints: &str, args: &[&str]) -> (bool, String) {
        let mut cmd = Command::new(ETCDCTL_BIN);
        cmd.env_clear()
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(endpoints)
            .args(["--dial-timeout", "1s", "--command-timeout", "2s"]);
        if let Some(t) = &self.tls {
            cmd.arg("--cacert")
                .arg(&t.ca)
                .arg("--cert")
                .arg(&t.client_cert)
                .arg("--key")
                .arg(&t.client_key);
        }
        if let Some(pw) = &self.root_password {
            cmd.arg("--user").arg(format!("root:{pw}"));
        }
        let out = cmd.args(args).output().expect("run etcdctl");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// Waits until member `i` reports healthy (it has a leader), at most 30 s.
    pub fn wait_healthy(&self, i: usize) {
        let start = Instant::now();
        let ep = self.endpoint(i);
        loop {
            let (ok, text) = self.etcdctl_at(&ep, &["endpoint", "health"]);
            if ok {
                return;
            }
            if start.elapsed() > Duration::from_secs(30) {
                panic!(
                    "etcd member {i} ({ep}) not healthy after 30 s: {text}\n--- log:\n{}",
                    self.log_tail(i)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of member `i`'s log.
    pub fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGKILLs member `i` (its data stays for a restart).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            // Already exited is fine (kill fails then): the point is that it
            // is not running; wait only reaps it.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) member `i`: a hung member
    /// keeps its connections open and answers nothing.
    pub fn pause(&mut self, i: usize, stop: bool) {
        let pid = self.members[i].child.as_ref().expect("member running").id();
        let sig = if stop { "-STOP" } else { "-CONT" };
        let st = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill {sig} {pid}");
    }

    /// Starts member `i` again on its data directory (it rejoins the cluster).
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} still running");
        self.spawn(i);
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// The member that is the leader now, as the running members report it
    /// (`etcdctl endpoint status`); None while there is none. A member
    /// whose status cannot be read (stopped) does not count.
    pub fn leader(&self) -> Option<usize> {
        let mut leader = None;
        for i in (0..self.members.len()).filter(|&i| self.is_running(i)) {
            let (ok, out) =
                self.etcdctl_at(&self.endpoint(i), &["endpoint", "status", "-w", "json"]);
            if !ok {
                continue;
            }
            let v: serde_json::Value = match serde_json::from_str(out.trim()) {
                Ok(v) => v,
                Err(_) => continue,
            };
            let st = &v[0]["Status"];
            let (id, lead) = (st["header"]["member_id"].as_u64(), st["leader"].as_u64());
            if id.is_some() && id == lead {
                leader = Some(i);
            }
        }
        leader
    }

    /// Enables etcd's authentication: user `root` (with the root role and
    /// `password`, which etcdctl uses from now on), then `auth enable`.
    pub fn enable_auth(&mut self, password: &str) {
        for args in [
            vec!["user", "add", "root", "--new-user-password", password],
            vec!["user", "grant-role", "root", "root"],
            vec!["auth", "enable"],
        ] {
            let (ok, out) = self.etcdctl(&args);
            assert!(ok, "etcdctl {args:?}: {out}");
        }
        self.root_password = Some(password.to_string());
    }

    /// Adds user `name` with `password` and a role of the same name that may
    /// read and write every key under `prefix` (nothing when None).
    pub fn add_user(&self, name: &str, password: &str, prefix: Option<&str>) {
        let mut cmds = vec![
            vec!["user", "add", name, "--new-user-password", password],
            vec!["role", "add", name],
        ];
        if let Some(p) = prefix {
            cmds.push(vec![
                "role",
                "grant-permission",
                name,
                "--prefix=true",
                "readwrite",
                p,
            ]);
        }
        cmds.push(vec!["user", "grant-role", name, name]);
        for args in cmds {
            let (ok, out) = self.etcdctl(&args);
            assert!(ok, "etcdctl {args:?}: {out}");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// What a [`Proxy`] does with its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ProxyMode {
    /// Both directions, as a plain TCP relay.
    Forward = 0,
    /// Requests reach the member, its answers are thrown away: a request
    /// is applied while its client hears nothing (a lost answer).
    DropAnswers = 1,
    /// New connections are closed at once (existing ones keep their mode).
    Reject = 2,
}

/// A TCP relay on a loopback port in front of one etcd member, its mode
/// switchable at any time; its threads end with the test process.
pub struct Proxy {
    port: u16,
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

impl Proxy {
    /// Relays to `target` (`http://127.0.0.1:PORT`), starting in `mode`.
    pub fn start(target: &str, mode: ProxyMode) -> Proxy {
        use std::sync::atomic::{AtomicU8, Ordering};
        let to = target
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .expect("target http://127.0.0.1:PORT");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy port");
        let port = listener.local_addr().expect("proxy addr").port();
        let shared = std::sync::Arc::new(AtomicU8::new(mode as u8));
        let m = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if m.load(Ordering::SeqCst) == ProxyMode::Reject as u8 {
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                let relay =
                    |mut from: std::net::TcpStream,
                     mut to: std::net::TcpStream,
                     drop_when: Option<std::sync::Arc<AtomicU8>>| {
                        std::thread::spawn(move || {
                            use std::io::{Read, Write};
                            let mut buf = [0u8; 16 * 1024];
                            loop {
                                let n = match from.read(&mut buf) {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => n,
                                };
                                let dropped = drop_when.as_ref().is_some_and(|m| {
                                    m.load(Ordering::SeqCst) == ProxyMode::DropAnswers as u8
                                });
                                if !dropped && to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                            let _ = to.shutdown(std::net::Shutdown::Both);
                        })
                    };
                let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                    (Ok(c), Ok(s)) => (c, s),
                    _ => continue,
                };
                relay(client, server, None);
                relay(s2, c2, Some(m.clone()));
            }
        });
        Proxy { port, mode: shared }
    }

    pub fn set(&self, mode: ProxyMode) {
        self.mode
            .store(mode as u8, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
