//! Fault injection through the real binary: workers run ADD and DEL
//! concurrently on one network while a killer thread SIGKILLs in-flight
//! plugin processes 0-3 ms after they were spawned. Afterwards the store must
//! hold no address twice, no file that names no attachment, every address
//! whose ADD printed a result (unless a DEL of it completed later), nothing
//! stray in the network directory; and GC plus DEL must empty it.
//!
//! FAULTS_SEED=<n> replays a seed (timing still varies); FAULTS_ITERS=<n>
//! sets the iterations per worker. FAULTS_BIN=<path> runs the concurrent
//! phase and the first audit against another plugin (e.g. the Go reference,
//! to see the audit catch its empty files), then stops.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

const NET: &str = "faultnet";
const WORKERS: usize = 8;
const PER_WORKER: usize = 4;

fn ipam() -> Value {
    json!({"ranges": [[{"subnet": "10.77.0.0/24"}], [{"subnet": "2001:db8:77::/120"}]]})
}

/// What the test knows about one attachment from the outcomes it saw.
#[derive(Clone, Debug, PartialEq)]
enum State {
    /// Never added, or a DEL completed after the last ADD.
    Free,
    /// An ADD printed these addresses and nothing that could remove them ran since.
    Reserved(BTreeSet<String>),
    /// A killed ADD or DEL left it undetermined (0, 1 or 2 addresses).
    Unknown,
}

/// In-flight plugin processes: pid -> when to kill it (None: let it run).
/// An entry is removed (under the lock) after the child has exited but
/// before it is reaped, so the killer never signals a reused pid.
type Inflight = Arc<Mutex<HashMap<i32, Option<Instant>>>>;

struct Outcome {
    /// Exit code; None when killed by a signal.
    code: Option<i32>,
    stdout: String,
}

fn run_one(
    bin: &Path,
    inflight: &Inflight,
    kill_at: Option<Duration>,
    cmd: &str,
    id: &str,
    ifname: &str,
    conf: &[u8],
) -> Outcome {
    let mut c = Command::new(bin);
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(cni_env(cmd, id, ifname))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let started = Instant::now();
    let pid = child.id() as i32;
    inflight
        .lock()
        .unwrap()
        .insert(pid, kill_at.map(|d| started + d));
    {
        // Killed before reading: EPIPE, ignored.
        let mut si = child.stdin.take().unwrap();
        let _ = si.write_all(conf);
    }
    // Wait for the exit without reaping (WNOWAIT): the pid stays ours.
    loop {
        // SAFETY: siginfo_t is plain data; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer; pid is our unreaped child.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "waitid: {e}");
    }
    inflight.lock().unwrap().remove(&pid);
    let mut stdout = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut stdout);
    let status = child.wait().unwrap();
    Outcome {
        code: status.code(),
        stdout,
    }
}

/// The addresses of a printed ADD result, if stdout holds a complete one.
fn printed_ips(stdout: &str) -> Option<BTreeSet<String>> {
    let v: Value = serde_json::from_str(stdout).ok()?;
    let ips = v.get("ips")?.as_array()?;
    Some(
        ips.iter()
            .filter_map(|i| i["address"].as_str())
            .map(|a| a.split('/').next().unwrap().to_string())
            .collect(),
    )
}

fn err_code(stdout: &str) -> Option<u64> {
    serde_json::from_str::<Value>(stdout)
        .ok()?
        .get("code")?
        .as_u64()
}

struct Attach {
    id: String,
    ifname: String,
    state: State,
    log: Vec<String>,
}

#[derive(Default)]
struct Stats {
    runs: AtomicUsize,
    killed: AtomicUsize,
    printed_then_killed: AtomicUsize,
    adds_ok: AtomicUsize,
    dels_ok: AtomicUsize,
    dup: AtomicUsize,
    /// Wall time of the last run that was not killed, in µs: the kill
    /// window follows it, so that kills land anywhere in a run (the fsyncs
    /// make a run take well over 3 ms on a real disk).
    last_run_us: AtomicU64,
}

fn worker(
    net: Net,
    w: usize,
    seed: u64,
    iters: usize,
    inflight: Inflight,
    stats: Arc<Stats>,
) -> Result<Vec<Attach>, String> {
    let conf = net.conf();
    let mut rng = Rng((seed ^ (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1);
    let mut atts: Vec<Attach> = (0..PER_WORKER)
        .map(|k| Attach {
            id: format!("w{w}-c{k}"),
            ifname: format!("eth{}", k % 2),
            state: State::Free,
            log: Vec::new(),
        })
        .collect();
    for i in 0..iters {
        let k = rng.below(PER_WORKER as u64) as usize;
        let a = &mut atts[k];
        let cmd = match &a.state {
            State::Free => "ADD",
            State::Reserved(_) if rng.below(10) == 0 => "ADD",
            State::Reserved(_) => "DEL",
            State::Unknown if rng.below(2) == 0 => "ADD",
            State::Unknown => "DEL",
        };
        // Half the runs are killed, 0-3 ms after spawn or anywhere within
        // the last complete run's duration when that was longer.
        let window = stats
            .last_run_us
            .load(Ordering::Relaxed)
            .clamp(3000, 50_000);
        let kill_at = (rng.below(2) == 0).then(|| Duration::from_micros(rng.below(window + 1)));
        let t0 = Instant::now();
        let o = run_one(&net.bin, &inflight, kill_at, cmd, &a.id, &a.ifname, &conf);
        stats.runs.fetch_add(1, Ordering::Relaxed);
        let killed = o.code.is_none();
        if killed {
            stats.killed.fetch_add(1, Ordering::Relaxed);
        } else {
            stats
                .last_run_us
                .store(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        let before = a.state.clone();
        let fail = |a: &Attach, why: String| -> String {
            format!(
                "worker {w} iteration {i}: {cmd} {} {}: {why}; state {before:?}; history {:?}",
                a.id, a.ifname, a.log
            )
        };
        match cmd {
            "ADD" => {
                if let Some(ips) = printed_ips(&o.stdout) {
                    if ips.len() != 2 {
                        return Err(fail(
                            a,
                            format!("result without two addresses: {}", o.stdout),
                        ));
                    }
                    if before == State::Free || before == State::Unknown {
                        a.state = State::Reserved(ips);
                    } else {
                        return Err(fail(
                            a,
                            "ADD succeeded for an attachment that holds addresses".into(),
                        ));
                    }
                    stats.adds_ok.fetch_add(1, Ordering::Relaxed);
                    if killed {
                        stats.printed_then_killed.fetch_add(1, Ordering::Relaxed);
                    }
                } else if killed {
                    if before == State::Free {
                        a.state = State::Unknown;
                    }
                } else {
                    match err_code(&o.stdout) {
                        // 999: the reference's catch-all (FAULTS_BIN).
                        Some(102) | Some(999) if before != State::Free => {
                            stats.dup.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            return Err(fail(
                                a,
                                format!("unexpected exit {:?}: {}", o.code, o.stdout),
                            ))
                        }
                    }
                }
            }
            _ => {
                if o.code == Some(0) {
                    a.state = State::Free;
                    stats.dels_ok.fetch_add(1, Ordering::Relaxed);
                } else if killed {
                    if before != State::Free {
                        a.state = State::Unknown;
                    }
                } else {
                    return Err(fail(a, format!("DEL failed {:?}: {}", o.code, o.stdout)));
                }
            }
        }
        a.log.push(format!(
            "{cmd}{}->{:?}",
            if killed { "(killed)" } else { "" },
            a.state
        ));
    }
    Ok(atts)
}

/// (container ID, ifname) -> the addresses whose files name it.
type ByAttachment = BTreeMap<(String, String), BTreeSet<String>>;

/// Reads the network directory: attachment -> addresses, plus problems.
fn audit(net: &Path) -> (ByAttachment, Vec<String>) {
    let mut by_att = ByAttachment::new();
    let mut problems = Vec::new();
    for name in dir_names(net) {
        if name == "lock" || name == "last_reserved_ip.0" || name == "last_reserved_ip.1" {
            continue;
        }
        let canonical = name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_string() == name);
        if !canonical {
            problems.push(format!("stray file {name:?} in the network directory"));
            continue;
        }
        let p = net.join(&name);
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if !meta.is_file() {
            problems.push(format!("{name} is not a regular file"));
            continue;
        }
        let content = std::fs::read(&p).unwrap();
        let text = String::from_utf8_lossy(&content);
        match text.split_once("\r\n") {
            Some((id, ifname))
                if !id.is_empty() && !ifname.is_empty() && !ifname.contains('\n') =>
            {
                by_att
                    .entry((id.to_string(), ifname.to_string()))
                    .or_default()
                    .insert(name);
            }
            _ => problems.push(format!("{name} names no attachment: {content:?}")),
        }
    }
    (by_att, problems)
}

#[test]
fn concurrent_add_del_under_sigkill_keeps_the_store_sound() {
    let seed: u64 = std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let iters: usize = std::env::var("FAULTS_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let other_bin = std::env::var_os("FAULTS_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let bin = other_bin.clone().unwrap_or_else(our_bin);
    eprintln!(
        "faults: FAULTS_SEED={seed} FAULTS_ITERS={iters} plugin {}",
        bin.display()
    );
    let d = tempfile::tempdir().unwrap();
    let data = d.path().to_path_buf();
    let net = data.join(NET);
    let faultnet = our_net(NET, &data, ipam());
    let inflight: Inflight = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Stats::default());

    let killer = {
        let (inflight, stop) = (inflight.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                {
                    let mut m = inflight.lock().unwrap();
                    let now = Instant::now();
                    for (pid, at) in m.iter_mut() {
                        if at.is_some_and(|t| t <= now) {
                            // SAFETY: the pid is an unreaped child of ours (see Inflight).
                            unsafe { libc::kill(*pid, libc::SIGKILL) };
                            *at = None;
                        }
                    }
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        })
    };
    let started = Instant::now();
    let handles: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (inflight, stats) = (inflight.clone(), stats.clone());
            let net = faultnet.with_bin(&bin).with_version("1.0.0");
            std::thread::spawn(move || worker(net, w, seed, iters, inflight, stats))
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    killer.join().unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "faults: {} runs in {elapsed:?}: {} killed ({} after printing), {} ADD results, {} DELs, {} duplicates refused; last run {} us",
        stats.runs.load(Ordering::Relaxed),
        stats.killed.load(Ordering::Relaxed),
        stats.printed_then_killed.load(Ordering::Relaxed),
        stats.adds_ok.load(Ordering::Relaxed),
        stats.dels_ok.load(Ordering::Relaxed),
        stats.dup.load(Ordering::Relaxed),
        stats.last_run_us.load(Ordering::Relaxed),
    );
    let mut atts = Vec::new();
    for r in results {
        match r {
            Ok(a) => atts.extend(a),
            Err(e) => panic!("seed {seed}: {e}"),
        }
    }
    assert!(
        stats.killed.load(Ordering::Relaxed) > 0,
        "the killer must have hit something"
    );

    // 1. The directory as the processes left it.
    let (by_att, problems) = audit(&net);
    let mut errors = problems;
    let known: BTreeMap<(String, String), &Attach> = atts
        .iter()
        .map(|a| ((a.id.clone(), a.ifname.clone()), a))
        .collect();
    for (att, ips) in &by_att {
        let Some(a) = known.get(att) else {
            errors.push(format!("{ips:?} name an attachment nobody added: {att:?}"));
            continue;
        };
        let v4 = ips.iter().filter(|i| !i.contains(':')).count();
        let v6 = ips.len() - v4;
        if v4 > 1 || v6 > 1 {
            errors.push(format!(
                "{att:?} holds two addresses in one range set: {ips:?}; history {:?}",
                a.log
            ));
        }
    }
    for a in &atts {
        let held = by_att
            .get(&(a.id.clone(), a.ifname.clone()))
            .cloned()
            .unwrap_or_default();
        match &a.state {
            State::Reserved(ips) if &held != ips => errors.push(format!(
                "{} {}: ADD printed {ips:?}, the store holds {held:?}; history {:?}",
                a.id, a.ifname, a.log
            )),
            State::Free if !held.is_empty() => errors.push(format!(
                "{} {}: DEL completed, the store still holds {held:?}; history {:?}",
                a.id, a.ifname, a.log
            )),
            _ => {}
        }
    }
    assert!(errors.is_empty(), "seed {seed}:\n{}", errors.join("\n"));
    if other_bin.is_some() {
        return;
    }

    // 2. The index agrees: CHECK finds every reserved attachment, not the free ones.
    for a in &atts {
        let o = faultnet.check(&a.id, &a.ifname);
        match &a.state {
            State::Reserved(_) => assert_eq!(o.code, 0, "CHECK {} {}: {o:?}", a.id, a.ifname),
            State::Free => assert_eq!(
                o.err_code(),
                Some(103),
                "CHECK {} {}: {o:?}",
                a.id,
                a.ifname
            ),
            State::Unknown => {}
        }
    }

    // 3. GC keeping every attachment that may hold something removes only
    //    what names nobody (nothing, if the write protocol holds).
    let keep: Vec<(&str, &str)> = atts
        .iter()
        .filter(|a| a.state != State::Free)
        .map(|a| (a.id.as_str(), a.ifname.as_str()))
        .collect();
    let o = faultnet.gc(&keep);
    assert_eq!(o.code, 0, "{o:?}");
    let (after, problems) = audit(&net);
    assert!(
        problems.is_empty(),
        "GC reclaims every damaged file: {problems:?}"
    );
    assert_eq!(after, by_att, "GC kept every valid reservation");

    // 4. A new ADD on the busy store gets an address nobody holds.
    let held: BTreeSet<String> = after.values().flatten().cloned().collect();
    let o = faultnet.add("late", "eth0");
    assert_eq!(o.code, 0, "{o:?}");
    let late = printed_ips(&o.stdout).unwrap();
    assert!(late.is_disjoint(&held), "{late:?} already held: {held:?}");

    // 5. GC with an empty list and DEL of everything leave lock and cursors.
    let o = faultnet.gc(&[]);
    assert_eq!(o.code, 0, "{o:?}");
    for a in &atts {
        let o = faultnet.del(&a.id, &a.ifname);
        assert_eq!(o.code, 0, "DEL {} {}: {o:?}", a.id, a.ifname);
    }
    assert_eq!(faultnet.del("late", "eth0").code, 0);
    assert_eq!(
        dir_names(&net),
        ["last_reserved_ip.0", "last_reserved_ip.1", "lock"],
        "seed {seed}"
    );
    let index = data.join(".host-local-rs").join(NET);
    let stray: Vec<String> = dir_names(&index)
        .into_iter()
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "temporaries left in the index: {stray:?}");
}
