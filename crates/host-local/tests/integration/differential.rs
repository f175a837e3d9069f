//! Differential suite: every scenario runs step by step against the Go
//! reference (/usr/lib/cni/host-local) and ours, each in a fresh data
//! directory, and after every step compares exit codes, stdout JSON and the
//! data directory (names, contents, modes).
//!
//! Only the deliberate differences listed in docs/DIFFERENCES.md are
//! normalised away, and each is asserted precisely where it applies:
//! - error objects: ours carry `cniVersion` [D1]; our `msg` starts with the
//!   reference's (its text, then our detail) [D2] on every step where both
//!   fail, except in `CodesMsg` steps (`ConfigMsg` steps also name the code);
//! - reservation and cursor files: ours 0600, the reference 0644 [D3];
//! - steps marked `Codes`, `RefRefuses`, `OursRefuses` or `Outputs` assert
//!   the exact value on each side.
//!
//! Long (~1,080 lines) because it is one table of scenarios plus the runner
//! that compares them; splitting the table would only scatter it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::common::{our_bin, ref_bin_or_skip, run_plugin_in, store_snapshot, Entry, Output};

/// The reference's catch-all error code.
const GO_CATCH_ALL: u64 = 999;

/// How the outputs of one step must compare.
#[derive(Debug, Clone)]
enum Expect {
    /// Same exit code and the same stdout JSON (errors: the same code).
    Same,
    /// Deliberate: both fail with the same exit code; the reference prints
    /// code `theirs`, ours code `ours`.
    Codes { theirs: u64, ours: u64 },
    /// Deliberate, message included: as `Codes`, but our `msg` does not
    /// start with the reference's; it starts with `ours_start` (the
    /// DIFFERENCES.md entry says why).
    CodesMsg {
        theirs: u64,
        ours: u64,
        ours_start: &'static str,
    },
    /// Deliberate: the reference fails with code `theirs`; ours succeeds and
    /// prints exactly `ours` (Null: nothing).
    RefRefuses { theirs: u64, ours: Value },
    /// Deliberate: the reference succeeds; ours fails with code `ours`.
    OursRefuses { ours: u64 },
    /// Deliberate: both succeed, each printing exactly the given JSON.
    Outputs { theirs: Value, ours: Value },
    /// Same exit code and error code, and our message starts with the
    /// reference's.
    SameMsg,
    /// A configuration (or CNI_ARGS) error: both fail, the reference with its
    /// catch-all code, ours with `ours`, and our message starts with the
    /// reference's.
    ConfigMsg { ours: u64 },
}

/// How the data directories must compare after a step.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Files {
    /// Equal (modulo the 0600/0644 mode difference).
    Same,
    /// Equal except `last_reserved_ip.*`; ours' cursors did not move in this
    /// step (a failed ADD does not advance our cursor) [D11].
    CursorKept,
    /// Ours' store did not change at all in this step; the reference's may.
    OursUnchanged,
    /// The stores diverge on purpose from here (no comparison).
    Diverged,
}

#[derive(Debug, Clone)]
enum Action {
    /// Run one command on both sides.
    Run {
        cmd: &'static str,
        container: Option<&'static str>,
        ifname: Option<&'static str>,
        netns: Option<&'static str>,
        args: Option<&'static str>,
        stdin: String,
    },
    /// Write a file (relative to the data dir) on both sides.
    Seed {
        rel: &'static str,
        data: &'static str,
    },
    /// Remove a file (relative to the data dir) on both sides.
    Remove { rel: &'static str },
}

#[derive(Debug, Clone)]
struct Step {
    action: Action,
    expect: Expect,
    files: Files,
}

impl Step {
    fn run(cmd: &'static str, conf: &Value) -> Step {
        Step {
            action: Action::Run {
                cmd,
                container: Some("c1"),
                ifname: Some("eth0"),
                netns: Some("/var/run/netns/test"),
                args: None,
                stdin: conf.to_string(),
            },
            expect: Expect::Same,
            files: Files::Same,
        }
    }
    fn raw(cmd: &'static str, stdin: &str) -> Step {
        let mut s = Step::run(cmd, &Value::Null);
        if let Action::Run { stdin: si, .. } = &mut s.action {
            *si = stdin.to_string();
        }
        s
    }
    fn seed(rel: &'static str, data: &'static str) -> Step {
        Step {
            action: Action::Seed { rel, data },
            expect: Expect::Same,
            files: Files::Same,
        }
    }
    fn remove(rel: &'static str) -> Step {
        Step {
            action: Action::Remove { rel },
            expect: Expect::Same,
            files: Files::Same,
        }
    }
    fn with(mut self, f: impl FnOnce(&mut Action)) -> Step {
        f(&mut self.action);
        self
    }
    fn id(self, id: &'static str) -> Step {
        self.with(|a| {
            if let Action::Run { container, .. } = a {
                *container = Some(id);
            }
        })
    }
    fn no_id(self) -> Step {
        self.with(|a| {
            if let Action::Run { container, .. } = a {
                *container = None;
            }
        })
    }
    fn ifname(self, n: &'static str) -> Step {
        self.with(|a| {
            if let Action::Run { ifname, .. } = a {
                *ifname = Some(n);
            }
        })
    }
    fn no_ifname(self) -> Step {
        self.with(|a| {
            if let Action::Run { ifname, .. } = a {
                *ifname = None;
            }
        })
    }
    fn no_netns(self) -> Step {
        self.with(|a| {
            if let Action::Run { netns, .. } = a {
                *netns = None;
            }
        })
    }
    fn args(self, s: &'static str) -> Step {
        self.with(|a| {
            if let Action::Run { args, .. } = a {
                *args = Some(s);
            }
        })
    }
    fn expect(mut self, e: Expect) -> Step {
        self.expect = e;
        self
    }
    fn files(mut self, f: Files) -> Step {
        self.files = f;
        self
    }
    /// Deliberate code difference against the reference's catch-all 999.
    /// A config error: our code 7 and the reference's message text first.
    fn config_error(self) -> Step {
        self.ref_msg(7)
    }
    /// Both fail; ours with code `ours` and a message starting with the reference's.
    fn ref_msg(self, ours: u64) -> Step {
        self.expect(Expect::ConfigMsg { ours })
    }
    fn ours_code(self, ours: u64) -> Step {
        self.expect(Expect::Codes {
            theirs: GO_CATCH_ALL,
            ours,
        })
    }
}

fn add(conf: &Value) -> Step {
    Step::run("ADD", conf)
}
fn del(conf: &Value) -> Step {
    Step::run("DEL", conf)
}
fn check(conf: &Value) -> Step {
    Step::run("CHECK", &with_prev(conf))
}

/// `conf` with `prevResult` set to the side's last successful ADD output.
fn with_prev(conf: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = json!("@PREV@");
    c
}

/// A network config (name `net1`) with the given `ipam` object; `dataDir`
/// is filled in per side.
fn net(version: &str, ipam: Value) -> Value {
    net_named(version, "net1", ipam)
}

fn net_named(version: &str, name: &str, mut ipam: Value) -> Value {
    ipam["type"] = json!("host-local");
    if ipam.get("dataDir").is_none() {
        ipam["dataDir"] = json!("@DIR@");
    }
    json!({"cniVersion": version, "name": name, "type": "bridge", "ipam": ipam})
}

fn v4(version: &str) -> Value {
    net(version, json!({"subnet": "10.1.0.0/24"}))
}

fn dual(version: &str) -> Value {
    net(
        version,
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "2001:db8:1::/64"}]]}),
    )
}

const RESOLV: &str = "# test resolv.conf\nnameserver 10.9.9.9\nnameserver 2001:db8::53\n\
domain example.test\nsearch a.test b.test ; trailing comment\noptions ndots:2 timeout:1\n";

/// Normalises an error object: ours must carry a string `cniVersion` [D1],
/// which is removed; both must have a non-empty `msg`. Returns the code and
/// the message.
fn error_obj(ctx: &str, side: &str, out: &Output, ours: bool) -> (u64, String) {
    let v = out.json();
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{ctx}: {side} error output is not an object: {v}"));
    if ours {
        assert!(
            obj.get("cniVersion").is_some_and(Value::is_string),
            "{ctx}: our error object lacks cniVersion: {v}"
        );
    } else {
        assert!(
            obj.get("cniVersion").is_none(),
            "{ctx}: reference error carries cniVersion?"
        );
    }
    let msg = obj
        .get("msg")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| panic!("{ctx}: {side} error without msg: {v}"))
        .to_string();
    for k in obj.keys() {
        assert!(
            ["cniVersion", "code", "msg", "details"].contains(&k.as_str()),
            "{ctx}: {side} error has unexpected key {k}: {v}"
        );
    }
    let code = obj
        .get("code")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{ctx}: {side} error without numeric code: {v}"));
    (code, msg)
}

/// The code of an error object (see `error_obj`).
fn error_code(ctx: &str, side: &str, out: &Output, ours: bool) -> u64 {
    error_obj(ctx, side, out, ours).0
}

/// Both fail: our `msg` starts with the reference's (its text first, our
/// detail after it) [D2]. Returns the codes (reference, ours).
fn compare_errors(ctx: &str, r: &Output, o: &Output, show: &dyn Fn() -> String) -> (u64, u64) {
    let (rc, rmsg) = error_obj(ctx, "reference", r, false);
    let (oc, omsg) = error_obj(ctx, "ours", o, true);
    assert!(
        omsg.starts_with(&rmsg),
        "{ctx}: our msg does not start with the reference's\n  reference: {rmsg:?}\n  ours:      {omsg:?}{}",
        show()
    );
    (rc, oc)
}

fn compare_outputs(ctx: &str, expect: &Expect, r: &Output, o: &Output) {
    let show = || {
        format!(
            "\n  reference: rc={} {}\n  ours:      rc={} {}",
            r.code,
            r.stdout.trim(),
            o.code,
            o.stdout.trim()
        )
    };
    match expect {
        Expect::Same => {
            assert_eq!(r.code, o.code, "{ctx}: exit codes differ{}", show());
            if r.code == 0 {
                assert_eq!(r.json(), o.json(), "{ctx}: stdout differs{}", show());
            } else {
                let (rc, oc) = compare_errors(ctx, r, o, &show);
                assert_eq!(rc, oc, "{ctx}: error codes differ{}", show());
            }
        }
        Expect::Codes { theirs, ours } => {
            assert_ne!(r.code, 0, "{ctx}: reference should fail{}", show());
            assert_eq!(r.code, o.code, "{ctx}: exit codes differ{}", show());
            let (rc, oc) = compare_errors(ctx, r, o, &show);
            assert_eq!(rc, *theirs, "{ctx}: reference code{}", show());
            assert_eq!(oc, *ours, "{ctx}: our code{}", show());
        }
        Expect::CodesMsg {
            theirs,
            ours,
            ours_start,
        } => {
            assert_ne!(r.code, 0, "{ctx}: reference should fail{}", show());
            assert_eq!(r.code, o.code, "{ctx}: exit codes differ{}", show());
            assert_eq!(
                error_code(ctx, "reference", r, false),
                *theirs,
                "{ctx}: reference code{}",
                show()
            );
            let (oc, omsg) = error_obj(ctx, "ours", o, true);
            assert_eq!(oc, *ours, "{ctx}: our code{}", show());
            assert!(
                omsg.starts_with(ours_start),
                "{ctx}: our msg does not start with {ours_start:?}{}",
                show()
            );
        }
        Expect::RefRefuses { theirs, ours } => {
            assert_ne!(r.code, 0, "{ctx}: reference should fail{}", show());
            assert_eq!(
                error_code(ctx, "reference", r, false),
                *theirs,
                "{ctx}: reference code{}",
                show()
            );
            assert_eq!(o.code, 0, "{ctx}: ours should succeed{}", show());
            assert_eq!(&o.json(), ours, "{ctx}: our stdout{}", show());
        }
        Expect::OursRefuses { ours } => {
            assert_eq!(r.code, 0, "{ctx}: reference should succeed{}", show());
            assert_ne!(o.code, 0, "{ctx}: ours should fail{}", show());
            assert_eq!(
                error_code(ctx, "ours", o, true),
                *ours,
                "{ctx}: our code{}",
                show()
            );
        }
        Expect::SameMsg => {
            assert_ne!(r.code, 0, "{ctx}: reference should fail{}", show());
            assert_eq!(r.code, o.code, "{ctx}: exit codes differ{}", show());
            assert_eq!(
                error_code(ctx, "reference", r, false),
                error_code(ctx, "ours", o, true),
                "{ctx}: error codes differ{}",
                show()
            );
            let msg = |out: &Output| out.json()["msg"].as_str().unwrap_or_default().to_owned();
            assert!(
                msg(o).starts_with(&msg(r)),
                "{ctx}: our message does not start with the reference's{}",
                show()
            );
        }
        Expect::ConfigMsg { ours } => {
            assert_ne!(r.code, 0, "{ctx}: reference should fail{}", show());
            assert_eq!(r.code, o.code, "{ctx}: exit codes differ{}", show());
            assert_eq!(
                error_code(ctx, "reference", r, false),
                GO_CATCH_ALL,
                "{ctx}: reference code{}",
                show()
            );
            assert_eq!(
                error_code(ctx, "ours", o, true),
                *ours,
                "{ctx}: our code{}",
                show()
            );
            let msg = |out: &Output| out.json()["msg"].as_str().unwrap_or_default().to_owned();
            let (rm, om) = (msg(r), msg(o));
            assert!(
                om.starts_with(&rm),
                "{ctx}: our message does not start with the reference's{}",
                show()
            );
        }
        Expect::Outputs { theirs, ours } => {
            assert_eq!(r.code, 0, "{ctx}: reference should succeed{}", show());
            assert_eq!(o.code, 0, "{ctx}: ours should succeed{}", show());
            assert_eq!(&r.json(), theirs, "{ctx}: reference stdout{}", show());
            assert_eq!(&o.json(), ours, "{ctx}: our stdout{}", show());
        }
    }
}

fn is_cursor(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with("last_reserved_ip."))
}

/// Compares two store snapshots. Reservation and cursor files may be 0644
/// on the reference's side where ours are 0600 [D3]; nothing else may differ.
fn compare_stores(
    ctx: &str,
    r: &BTreeMap<String, Entry>,
    o: &BTreeMap<String, Entry>,
    skip_cursor: bool,
) {
    let keep = |p: &&String| !(skip_cursor && is_cursor(p));
    let rn: Vec<&String> = r.keys().filter(keep).collect();
    let on: Vec<&String> = o.keys().filter(keep).collect();
    assert_eq!(rn, on, "{ctx}: data dir file names differ");
    for name in rn {
        let (re, oe) = (&r[name], &o[name]);
        assert_eq!(re.is_dir, oe.is_dir, "{ctx}: {name}: kind differs");
        assert_eq!(
            String::from_utf8_lossy(&re.data),
            String::from_utf8_lossy(&oe.data),
            "{ctx}: {name}: contents differ"
        );
        let mode_ok = re.mode == oe.mode
            || (!re.is_dir && !name.ends_with("/lock") && re.mode == 0o644 && oe.mode == 0o600);
        assert!(
            mode_ok,
            "{ctx}: {name}: mode reference {:o} ours {:o}",
            re.mode, oe.mode
        );
    }
}

/// Runs one scenario; returns after a loud skip when the reference is missing.
fn run_scenario(name: &str, steps: Vec<Step>) {
    let Some(refb) = ref_bin_or_skip(&format!("differential::{name}")) else {
        return;
    };
    let ours = our_bin();
    let tmp = tempfile::tempdir().unwrap();
    let resolv = tmp.path().join("resolv.conf");
    std::fs::write(&resolv, RESOLV).unwrap();
    let sides: [(PathBuf, PathBuf); 2] = [
        (refb, tmp.path().join("ref")),
        (ours, tmp.path().join("ours")),
    ];
    for (_, d) in &sides {
        std::fs::create_dir(d).unwrap();
    }
    let mut prev: [String; 2] = [String::from("{}"), String::from("{}")];
    for (i, step) in steps.iter().enumerate() {
        let ctx = format!("scenario {name} step {i} {:?}", step.action);
        let before_ours = store_snapshot(&sides[1].1);
        match &step.action {
            Action::Seed { rel, data } => {
                for (_, d) in &sides {
                    let p = d.join(rel);
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, data).unwrap();
                }
            }
            Action::Remove { rel } => {
                for (_, d) in &sides {
                    std::fs::remove_file(d.join(rel)).unwrap();
                }
            }
            Action::Run {
                cmd,
                container,
                ifname,
                netns,
                args,
                stdin,
            } => {
                let mut outs = Vec::new();
                for (k, (bin, dir)) in sides.iter().enumerate() {
                    let mut env: Vec<(&str, &str)> =
                        vec![("CNI_COMMAND", cmd), ("CNI_PATH", "/opt/cni/bin")];
                    if let Some(c) = container {
                        env.push(("CNI_CONTAINERID", c));
                    }
                    if let Some(n) = netns {
                        env.push(("CNI_NETNS", n));
                    }
                    if let Some(n) = ifname {
                        env.push(("CNI_IFNAME", n));
                    }
                    if let Some(a) = args {
                        env.push(("CNI_ARGS", a));
                    }
                    let stdin = stdin
                        .replace("@DIR@", dir.to_str().unwrap())
                        .replace("@RESOLV@", resolv.to_str().unwrap())
                        .replace("\"@PREV@\"", &prev[k]);
                    let out = run_plugin_in(bin, &env, stdin.as_bytes(), dir);
                    if *cmd == "ADD" && out.code == 0 {
                        prev[k] = out.stdout.clone();
                    }
                    outs.push(out);
                }
                compare_outputs(&ctx, &step.expect, &outs[0], &outs[1]);
            }
        }
        let (r, o) = (store_snapshot(&sides[0].1), store_snapshot(&sides[1].1));
        match step.files {
            Files::Same => compare_stores(&ctx, &r, &o, false),
            Files::CursorKept => {
                compare_stores(&ctx, &r, &o, true);
                let cursors = |s: &BTreeMap<String, Entry>| -> Vec<(String, Vec<u8>)> {
                    s.iter()
                        .filter(|(k, _)| is_cursor(k))
                        .map(|(k, e)| (k.clone(), e.data.clone()))
                        .collect()
                };
                assert_eq!(
                    cursors(&before_ours),
                    cursors(&o),
                    "{ctx}: our cursor moved on a failed ADD"
                );
            }
            Files::OursUnchanged => {
                let strip = |s: BTreeMap<String, Entry>| -> BTreeMap<String, Entry> {
                    // Creating the network dir and its lock file is not a change of state.
                    s.into_iter()
                        .filter(|(k, e)| !(e.is_dir || k.ends_with("/lock")))
                        .collect()
                };
                assert_eq!(strip(before_ours), strip(o), "{ctx}: our store changed");
            }
            Files::Diverged => {}
        }
    }
}

/// The exact 1.1.0 ADD result of `v4` on a fresh store.
fn v110_result() -> Value {
    json!({"cniVersion": "1.1.0", "ips": [{"address": "10.1.0.2/24", "gateway": "10.1.0.1"}], "dns": {}})
}

macro_rules! scenarios {
    ($($name:ident => $steps:expr;)*) => {
        $(
            #[test]
            fn $name() {
                run_scenario(stringify!($name), $steps);
            }
        )*
        /// The number of scenarios in this suite.
        const SCENARIO_COUNT: usize = [$(stringify!($name)),*].len();
    };
}

// The suite must keep at least 40 scenarios (checked at compile time).
const _: () = assert!(SCENARIO_COUNT >= 40, "fewer than 40 differential scenarios");

fn full_ipam(extra: Value) -> Value {
    let mut ipam = json!({
        "ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "2001:db8:1::/64"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}, {"dst": "::/0"}],
        "resolvConf": "@RESOLV@"
    });
    for (k, v) in extra.as_object().unwrap() {
        ipam[k] = v.clone();
    }
    ipam
}

fn version_flow(v: &'static str) -> Vec<Step> {
    let c = net(v, full_ipam(json!({})));
    let mut steps = vec![add(&c), add(&c).id("c2")];
    if v >= "0.4.0" {
        steps.push(check(&c).id("c2"));
    }
    steps.extend([del(&c), del(&c).id("c2"), del(&c).id("c2")]);
    steps
}

scenarios! {
    // ---- configuration forms ----
    old_style_v4_defaults => {
        let c = v4("1.0.0");
        vec![add(&c), add(&c).id("c2"), check(&c).id("c2"), del(&c), add(&c).id("c3"), del(&c).id("c2"), del(&c).id("c3")]
    };
    old_style_v4_start_end_gateway => {
        let c = net("0.4.0", json!({"subnet": "10.2.0.0/24", "rangeStart": "10.2.0.100", "rangeEnd": "10.2.0.102", "gateway": "10.2.0.254"}));
        vec![add(&c), add(&c).id("c2"), add(&c).id("c3"), add(&c).id("c4").ours_code(100),
             del(&c).id("c2"), add(&c).id("c4"), del(&c)]
    };
    old_style_v4_gateway_inside_range => {
        let c = net("1.0.0", json!({"subnet": "10.2.0.0/29", "gateway": "10.2.0.3"}));
        vec![add(&c), add(&c).id("c2"), add(&c).id("c3"), add(&c).id("c4"), add(&c).id("c5"),
             add(&c).id("c6").ours_code(100), del(&c).id("c3")]
    };
    old_style_v6 => {
        let c = net("1.0.0", json!({"subnet": "2001:db8:1::/64"}));
        vec![add(&c), add(&c).id("c2"), del(&c), add(&c).id("c3"), check(&c).id("c3")]
    };
    old_style_v6_start_end => {
        let c = net("0.3.1", json!({"subnet": "2001:db8:2::/120", "rangeStart": "2001:db8:2::10", "rangeEnd": "2001:db8:2::11", "gateway": "2001:db8:2::1"}));
        vec![add(&c), add(&c).id("c2"), add(&c).id("c3").ours_code(100), del(&c), add(&c).id("c3")]
    };
    ranges_dual_stack => {
        let c = dual("1.0.0");
        vec![add(&c), add(&c).id("c2"), check(&c).id("c2"), del(&c), del(&c).id("c2")]
    };
    ranges_three_sets => {
        let c = net("1.0.0", json!({"ranges": [
            [{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24", "gateway": "10.2.0.254"}], [{"subnet": "2001:db8:1::/64"}]]}));
        vec![add(&c), add(&c).id("c2"), del(&c), add(&c).id("c3")]
    };
    several_ranges_in_one_set => {
        let c = net("1.0.0", json!({"ranges": [[
            {"subnet": "10.3.0.0/30"},
            {"subnet": "10.3.1.0/29", "rangeStart": "10.3.1.3"}]]}));
        vec![add(&c), add(&c).id("c2"), add(&c).id("c3"), del(&c), add(&c).id("c4"), add(&c).id("c5"),
             add(&c).id("c6"), add(&c).id("c7").ours_code(100), del(&c).id("c4"), add(&c).id("c7")]
    };
    several_ranges_in_each_of_two_sets => {
        let c = net("0.4.0", json!({"ranges": [
            [{"subnet": "10.3.0.0/30"}, {"subnet": "10.3.2.0/30"}],
            [{"subnet": "2001:db8:3::/126"}, {"subnet": "2001:db8:4::/126"}]]}));
        vec![add(&c), add(&c).id("c2"), check(&c).id("c2"), add(&c).id("c3").ours_code(100), del(&c),
             add(&c).id("c3"), del(&c).id("c2"), add(&c).id("c4")]
    };
    overlapping_range_sets => {
        let c = net("1.0.0", json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/25"}]]}));
        vec![add(&c).config_error()]
    };
    mixed_families_in_one_set => {
        let c = net("1.0.0", json!({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "2001:db8:1::/64"}]]}));
        vec![add(&c).config_error()]
    };

    // ---- Go's decoding rules (key case, null, duplicates) and lenient configs ----
    gateway_outside_subnet => {
        let c = net("1.0.0", json!({"subnet": "10.1.0.0/24", "gateway": "10.2.0.1"}));
        let c6 = net("0.3.1", json!({"ranges": [[{"subnet": "10.1.0.0/24", "gateway": "2001:db8::1"}]]}));
        vec![add(&c), add(&c).id("c2"), check(&c).id("c2"), del(&c), add(&c6).id("c3")]
    };
    key_case_old_style => {
        let c = net("1.0.0", json!({"Subnet": "10.1.0.0/24", "RangeStart": "10.1.0.7", "RANGEEND": "10.1.0.9", "GateWay": "10.1.0.8"}));
        vec![add(&c), add(&c).id("c2"), add(&c).id("c3").ours_code(100), check(&c).id("c2"), del(&c)]
    };
    key_case_ranges => {
        let c = net("0.4.0", json!({"Ranges": [[{"SUBNET": "10.1.0.0/24", "rangestart": "10.1.0.50"}], [{"Subnet": "2001:db8:1::/64"}]]}));
        vec![add(&c), check(&c), del(&c)]
    };
    key_case_routes_and_resolv_conf => {
        let c = net("1.0.0", json!({"subnet": "10.1.0.0/24", "Routes": [{"Dst": "0.0.0.0/0", "GW": "10.1.0.1"}, {"DST": "10.9.0.0/16"}],
                                    "ResolvConf": "@RESOLV@"}));
        vec![add(&c), del(&c)]
    };
    route_1_1_0_fields_ignored_below_1_1_0 => {
        // The reference's routes are dst and gw only: mtu (even of the wrong type) is ignored.
        let c = net("1.0.0", json!({"subnet": "10.1.0.0/24", "routes": [{"dst": "0.0.0.0/0", "mtu": 1400, "table": "x"}]}));
        vec![add(&c), del(&c)]
    };
    key_case_envelope_args_runtime_config => {
        let c = json!({"cniVersion": "1.0.0", "name": "net1", "type": "bridge",
            "IPAM": {"type": "host-local", "DataDir": "@DIR@", "ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "2001:db8:1::/64"}]]},
            "Args": {"CNI": {"IPs": ["10.1.0.9"]}}, "RuntimeConfig": {"IPS": ["2001:db8:1::9"]}});
        vec![add(&c), del(&c)]
    };
    nulls_are_zero_values => {
        let c = net("1.0.0", json!({"subnet": "10.1.0.0/24", "rangeStart": null, "rangeEnd": "", "gateway": null,
                                    "routes": null, "ranges": null, "resolvConf": null}));
        let mut c2 = c.clone();
        c2["args"] = Value::Null;
        c2["runtimeConfig"] = Value::Null;
        c2["prevResult"] = Value::Null;
        let c3 = net("1.0.0", json!({"ranges": [[{"subnet": "10.1.0.0/24", "gateway": null, "rangeStart": ""}]]}));
        vec![add(&c), add(&c2).id("c2"), add(&c3).id("c3"), del(&c2).id("c2")]
    };
    duplicate_keys_last_wins_and_objects_merge => {
        let raw = r#"{"cniVersion":"0.3.0","cniVersion":"1.0.0","name":"net1","type":"bridge",
            "ipam":{"type":"host-local","subnet":"10.9.0.0/24","dataDir":"@DIR@","subnet":"10.1.0.0/24"},
            "ipam":{"rangeStart":"10.1.0.20","routes":[{"dst":"10.8.0.0/16"}],"Routes":[{"dst":"0.0.0.0/0"}]}}"#;
        vec![Step::raw("ADD", raw), Step::raw("ADD", raw).id("c2"), Step::raw("DEL", raw)]
    };
    numbers_and_wrong_types => {
        // A wrong JSON type: serde's wording after `json: ` [D2].
        let wrong_type = Expect::CodesMsg { theirs: GO_CATCH_ALL, ours: 7, ours_start: "json: " };
        vec![
            add(&net("1.0.0", json!({"subnet": 5}))).expect(wrong_type.clone()),
            add(&net("1.0.0", json!({"subnet": "10.1.0.0/24", "dataDir": 5}))).expect(wrong_type.clone()),
            add(&net("1.0.0", json!({"subnet": "10.1.0.0/24", "rangeStart": 7}))).expect(wrong_type),
        ]
    };
    envelope_messages => vec![
        Step::raw("ADD", r#"{"cniVersion":"1.0.0","name":5}"#).expect(Expect::SameMsg),
        Step::raw("ADD", r#"{"cniVersion":1,"name":"net1"}"#).expect(Expect::SameMsg),
        Step::raw("ADD", r#"{"cniVersion":"1.0.0"}"#).expect(Expect::SameMsg),
        Step::raw("ADD", r#"{"cniVersion":"1.0.0","name":"a b"}"#).expect(Expect::SameMsg),
        Step::raw("ADD", r#"{"cniVersion":"9.9.9","name":"net1"}"#).expect(Expect::SameMsg),
        // `type` is never decoded by the reference: any value is served.
        Step::raw("ADD", r#"{"cniVersion":"1.0.0","name":"net1","type":[],"ipam":{"subnet":"10.1.0.0/24","dataDir":"@DIR@"}}"#),
    ];
    config_error_messages => vec![
        add(&net("1.0.0", json!({"subnet": "10.1.0.0/24", "rangeStart": "10.1.3.4"}))).config_error(),
        add(&net("1.0.0", json!({"subnet": "10.1.0.0/24", "rangeEnd": "10.1.3.4"}))).config_error(),
        add(&net("1.0.0", json!({"subnet": "10.1.0.0/24", "rangeStart": "bogus"}))).config_error(),
        add(&net("1.0.0", json!({"subnet": "10.1.0.0/24", "gateway": "bogus"}))).config_error(),
        add(&net("1.0.0", json!({"subnet": "bogus"}))).config_error(),
        add(&net("1.0.0", json!({"subnet": "10.1.0.5/24"}))).config_error(),
        add(&net("1.0.0", json!({"subnet": "10.1.0.0/31"}))).config_error(),
        add(&net("1.0.0", json!({"subnet": "2001:db8::/127"}))).config_error(),
        add(&net("1.0.0", json!({"ranges": [null]}))).config_error(),
        add(&net("1.0.0", json!({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "10.1.0.0/25"}]]}))).config_error(),
        add(&net("1.0.0", json!({"subnet": "10.1.0.0/24", "ranges": [[{"subnet": "10.2.0.0/24"}], [{"subnet": "10.2.0.0/25"}]]}))).config_error(),
        add(&net("1.0.0", json!({"type": "host-local"}))).config_error(),
        add(&net("1.0.0", json!({"subnet": "", "ranges": [[{"subnet": "10.1.0.0/24"}]]}))).config_error(),
        add(&net("1.0.0", json!({"ranges": [[{"rangeStart": "10.1.0.5"}]]}))).config_error(),
        add(&json!({"cniVersion": "1.0.0", "name": "net1", "type": "bridge"})).config_error(),
        add(&net("1.0.0", json!({"subnet": "10.1.0.0/24", "routes": [{"dst": "1.0.0.0/8", "gw": "x"}]}))).config_error(),
        add(&net("1.0.0", json!({"subnet": "10.1.0.0/24"}))).with(|a| {
            if let Action::Run { stdin, .. } = a {
                *stdin = stdin.replace("\"ipam\"", "\"args\":{\"cni\":{\"ips\":[\"bogus\"]}},\"ipam\"");
            }
        }).config_error(),
    ];

    // ---- result shapes per version ----
    version_0_1_0 => version_flow("0.1.0");
    version_0_2_0 => version_flow("0.2.0");
    version_0_3_0 => version_flow("0.3.0");
    version_0_3_1 => version_flow("0.3.1");
    version_0_4_0 => version_flow("0.4.0");
    version_1_0_0 => version_flow("1.0.0");
    version_1_1_0_ours_only => {
        let c = v4("1.1.0");
        vec![
            add(&c).expect(Expect::RefRefuses { theirs: 1, ours: v110_result() }).files(Files::Diverged),
            del(&c).expect(Expect::RefRefuses { theirs: 1, ours: Value::Null }).files(Files::Diverged),
        ]
    };
    version_0_2_0_two_sets_one_family => {
        let c = net("0.2.0", json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]}));
        vec![add(&c).config_error()]
    };
    version_0_2_0_drops_route_without_address_family => {
        let c = net("0.2.0", json!({"subnet": "10.1.0.0/24", "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}));
        vec![add(&c), del(&c), add(&net("0.1.0", json!({"subnet": "2001:db8:1::/64", "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]})))]
    };
    version_command => {
        let old = json!(["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"]);
        let new = json!(["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
        vec![
            Step::run("VERSION", &v4("0.3.1")).expect(Expect::Outputs {
                theirs: json!({"cniVersion": "1.0.0", "supportedVersions": old}),
                ours: json!({"cniVersion": "0.3.1", "supportedVersions": new}),
            }),
            Step::run("VERSION", &v4("1.0.0")).expect(Expect::Outputs {
                theirs: json!({"cniVersion": "1.0.0", "supportedVersions": old}),
                ours: json!({"cniVersion": "1.0.0", "supportedVersions": new}),
            }),
            Step::raw("VERSION", "").expect(Expect::Outputs {
                theirs: json!({"cniVersion": "1.0.0", "supportedVersions": old}),
                ours: json!({"cniVersion": "1.1.0", "supportedVersions": new}),
            }),
        ]
    };
    gc_and_status_below_1_1_0 => {
        let c = v4("1.0.0");
        vec![add(&c),
             Step::run("GC", &c).expect(Expect::CodesMsg { theirs: 4, ours: 1, ours_start: "config version does not allow GC" }),
             Step::run("STATUS", &c).expect(Expect::CodesMsg { theirs: 4, ours: 1, ours_start: "config version does not allow STATUS" })]
    };

    // ---- round robin and exhaustion ----
    round_robin_over_cycles => {
        let c = net("1.0.0", json!({"subnet": "10.4.0.0/29"}));
        vec![add(&c).id("a"), add(&c).id("b"), add(&c).id("c"), del(&c).id("a"), add(&c).id("d"),
             add(&c).id("e"), add(&c).id("f"), del(&c).id("b"), del(&c).id("c"), add(&c).id("g"),
             add(&c).id("h"), add(&c).id("i").ours_code(100), del(&c).id("e"), add(&c).id("i")]
    };
    round_robin_dual_stack => {
        let c = net("1.0.0", json!({"ranges": [[{"subnet": "10.4.0.0/29"}], [{"subnet": "2001:db8:4::/125"}]]}));
        vec![add(&c).id("a"), add(&c).id("b"), del(&c).id("a"), add(&c).id("c"), del(&c).id("b"),
             add(&c).id("d"), add(&c).id("e"), add(&c).id("f"), del(&c).id("c"), add(&c).id("g")]
    };
    exhaustion_small_subnet => {
        let c = net("1.0.0", json!({"subnet": "10.5.0.0/30"}));
        vec![add(&c).id("a"), add(&c).id("b").ours_code(100), del(&c).id("a"), add(&c).id("b"),
             add(&c).id("a").ours_code(100)]
    };
    failed_add_keeps_cursor => {
        let c = net("1.0.0", json!({"ranges": [[{"subnet": "10.6.0.0/29"}], [{"subnet": "10.7.0.0/30"}]]}));
        vec![add(&c).id("a"), add(&c).id("b").ours_code(100).files(Files::CursorKept)]
    };

    // ---- requested addresses ----
    cni_args_ip_good => {
        let c = v4("1.0.0");
        vec![add(&c).args("IP=10.1.0.50"), add(&c).id("c2"), del(&c), add(&c).id("c3").args("IP=10.1.0.50")]
    };
    cni_args_ip_taken => {
        let c = v4("1.0.0");
        vec![add(&c), add(&c).id("c2").args("IP=10.1.0.2").ours_code(101), add(&c).id("c2")]
    };
    cni_args_ip_gateway => {
        let c = v4("1.0.0");
        vec![add(&c).args("IP=10.1.0.1").ours_code(101), add(&c)]
    };
    cni_args_ip_outside_every_range => {
        let c = v4("1.0.0");
        vec![add(&c).args("IP=192.168.7.7").ours_code(101).files(Files::CursorKept)]
    };
    cni_args_ip_one_set_of_two => {
        let c = dual("1.0.0");
        vec![add(&c).args("IP=10.1.0.9"), add(&c).id("c2").args("IP=2001:db8:1::9"), check(&c).id("c2")]
    };
    requested_one_placed_one_outside => {
        // The reference reserves (and moves the cursors), then releases.
        let mut c = dual("1.0.0");
        c["runtimeConfig"] = json!({"ips": ["10.1.0.9", "2001:db8:99::9"]});
        vec![add(&c).ours_code(101).files(Files::CursorKept)]
    };
    args_cni_ips_dual_stack => {
        let mut c = dual("1.0.0");
        c["args"] = json!({"cni": {"ips": ["10.1.0.9", "2001:db8:1::9"]}});
        vec![add(&c), check(&c), add(&c).id("c2").ours_code(101), del(&c), add(&c).id("c2")]
    };
    args_cni_ips_outside => {
        let mut c = v4("1.0.0");
        c["args"] = json!({"cni": {"ips": ["10.99.0.9"]}});
        vec![add(&c).ours_code(101).files(Files::CursorKept)]
    };
    runtime_config_ips => {
        let mut c = dual("1.0.0");
        c["runtimeConfig"] = json!({"ips": ["10.1.0.7/24", "2001:db8:1::7/64"]});
        vec![add(&c), add(&c).id("c2").ours_code(101), del(&c), add(&c).id("c2")]
    };
    runtime_config_ips_gateway => {
        let mut c = v4("1.0.0");
        c["runtimeConfig"] = json!({"ips": ["10.1.0.1"]});
        vec![add(&c).ours_code(101)]
    };
    runtime_config_ip_ranges => {
        let mut c = v4("1.0.0");
        c["runtimeConfig"] = json!({"ipRanges": [[{"subnet": "10.9.0.0/24"}]]});
        vec![add(&c), add(&c).id("c2"), check(&c).id("c2"), del(&c)]
    };

    runtime_ip_ranges_dual_with_requested => {
        let mut c = v4("1.0.0");
        c["runtimeConfig"] = json!({"ipRanges": [[{"subnet": "10.9.0.0/24"}], [{"subnet": "2001:db8:9::/64"}]],
                                    "ips": ["2001:db8:9::7"]});
        vec![add(&c), add(&c).id("c2").ours_code(101).files(Files::CursorKept)]
    };
    two_requested_in_one_set => {
        let mut c = v4("1.0.0");
        c["args"] = json!({"cni": {"ips": ["10.1.0.9/24", "10.1.0.10"]}});
        // Which one the reference places is Go's map order, random [D2].
        let left = Expect::CodesMsg { theirs: GO_CATCH_ALL, ours: 101,
                                      ours_start: "failed to allocate all requested IPs: " };
        vec![add(&c).expect(left.clone()).files(Files::CursorKept),
             add(&c).args("IP=10.1.0.5").expect(left.clone()).files(Files::CursorKept),
             add(&c).args("IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.1.0.77").expect(left).files(Files::CursorKept)]
    };

    // ---- routes, dns ----
    routes_passed_through => {
        let c = net("1.0.0", json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "2001:db8:1::/64"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.8.0.0/16", "gw": "10.1.0.254"}, {"dst": "2001:db8:9::/48", "gw": "2001:db8:1::fe"}]}));
        vec![add(&c), del(&c)]
    };
    resolv_conf => {
        let c = net("0.3.1", json!({"subnet": "10.1.0.0/24", "resolvConf": "@RESOLV@"}));
        vec![add(&c), del(&c)]
    };

    // ---- DEL, CHECK, attachments ----
    del_idempotent => {
        let c = v4("1.0.0");
        vec![del(&c).id("unknown"), add(&c), del(&c), del(&c), del(&c).no_netns(), add(&c).id("c2")]
    };
    del_without_netns => {
        let c = v4("0.4.0");
        vec![add(&c), del(&c).no_netns()]
    };
    check_lifecycle => {
        let c = dual("1.0.0");
        vec![check(&c).ours_code(103), add(&c), check(&c), check(&c).id("other").ours_code(103),
             check(&c).ifname("eth1").ours_code(103), del(&c), check(&c).ours_code(103)]
    };
    check_below_0_4_0 => {
        let c = v4("0.3.1");
        vec![add(&c), check(&c), check(&v4("0.1.0")), check(&v4("0.4.0"))]
    };
    check_prev_result_mismatch => {
        let mut c = v4("1.0.0");
        c["prevResult"] = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.99/24", "gateway": "10.1.0.1"}]});
        vec![add(&v4("1.0.0")), Step::run("CHECK", &c).expect(Expect::OursRefuses { ours: 104 })]
    };
    check_needs_every_range_set => {
        let c = dual("1.0.0");
        vec![add(&c), Step::remove("net1/2001:db8:1::2"), check(&c).expect(Expect::OursRefuses { ours: 103 })]
    };
    two_ifnames_one_container => {
        let c = dual("1.0.0");
        vec![add(&c), add(&c).ifname("eth1"), add(&c).ifname("eth1").ours_code(102), check(&c).ifname("eth1"),
             del(&c), check(&c).ours_code(103), check(&c).ifname("eth1"), del(&c).ifname("eth1")]
    };
    duplicate_add_refused => {
        let c = v4("1.0.0");
        vec![add(&c), add(&c).ours_code(102), del(&c), add(&c)]
    };
    legacy_one_line_files => {
        let c = v4("1.0.0");
        vec![Step::seed("net1/10.1.0.5", "old-a"), Step::seed("net1/10.1.0.6", "old-b\n"),
             Step::seed("net1/last_reserved_ip.0", "10.1.0.6"),
             add(&c).id("old-a").ours_code(102), Step::run("CHECK", &c).id("old-b"), add(&c).id("new"),
             del(&c).id("old-a"), del(&c).id("old-b"), add(&c).id("new2")]
    };
    multiple_networks_one_data_dir => {
        let a = v4("1.0.0");
        let b = net_named("1.0.0", "net2", json!({"subnet": "10.1.0.0/24"}));
        vec![add(&a), add(&b).id("c2"), add(&b), check(&b), del(&a), check(&b)]
    };

    // ---- bad input ----
    invalid_json => vec![Step::raw("ADD", "{\"cniVersion\": \"1.0.0\", \"name\":"), Step::raw("DEL", "[]")];
    empty_stdin => vec![Step::raw("ADD", ""), Step::raw("DEL", "")];
    missing_ipam => vec![add(&json!({"cniVersion": "1.0.0", "name": "net1", "type": "bridge"})).config_error()];
    missing_subnet => vec![add(&net("1.0.0", json!({}))).config_error()];
    bad_subnet => vec![add(&net("1.0.0", json!({"subnet": "10.1.0.0/33"}))).config_error(),
                       add(&net("1.0.0", json!({"ranges": [[{"subnet": "banana"}]]}))).config_error()];
    subnet_host_bits => vec![add(&net("1.0.0", json!({"subnet": "10.1.0.1/24"}))).config_error()];
    subnet_too_small => vec![
        add(&net("1.0.0", json!({"subnet": "10.1.0.0/31"}))).config_error(),
        add(&net("1.0.0", json!({"subnet": "10.1.0.0/32"}))).config_error(),
        add(&net("1.0.0", json!({"subnet": "2001:db8::/128"}))).config_error(),
    ];
    range_start_outside_subnet => vec![add(&net("1.0.0", json!({"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.5"}))).config_error()];
    missing_env_vars => {
        let c = v4("1.0.0");
        vec![add(&c).no_id(), add(&c).no_ifname(), add(&c).no_netns(), del(&c).no_id(), check(&c).no_netns()]
    };
    missing_command_prints_about => vec![Step::run("", &v4("1.0.0"))];
    unknown_command => vec![Step::run("FROB", &v4("1.0.0"))];
    invalid_container_id => {
        let c = v4("1.0.0");
        vec![add(&c).id("-bad"), add(&c).id("a b"), add(&c).id("a/b"), del(&c).id(".x")]
    };
    invalid_ifname => {
        let c = v4("1.0.0");
        vec![add(&c).ifname("a/b"), add(&c).ifname("0123456789abcdef"), add(&c).ifname("."), add(&c).ifname("a b"), add(&c).ifname("")]
    };
    invalid_network_name => vec![add(&net_named("1.0.0", "n/x", json!({"subnet": "10.1.0.0/24"})))];
    bad_cni_args => {
        let c = v4("1.0.0");
        vec![add(&c).args("FOObar").ref_msg(4), add(&c).args("IP=notanip").ref_msg(4)]
    };
    unknown_cni_args_key => {
        let c = v4("1.0.0");
        vec![add(&c).args("FOO=bar").ref_msg(4),
             add(&c).args("FOO=bar;IgnoreUnknown=1"),
             add(&c).id("c2").args("IgnoreUnknown=true;K8S_POD_NAME=x")]
    };

    ranges_empty => vec![add(&net("1.0.0", json!({"ranges": []}))).config_error(),
                         add(&net("1.0.0", json!({"ranges": [[]]}))).config_error()];
    bad_route => vec![add(&net("1.0.0", json!({"subnet": "10.1.0.0/24", "routes": [{"dst": "x"}]}))).config_error()];
    network_names => vec![
        add(&net_named("1.0.0", "..", json!({"subnet": "10.1.0.0/24"}))),
        add(&net_named("1.0.0", "-x", json!({"subnet": "10.1.0.0/24"}))),
        add(&net_named("1.0.0", "a b", json!({"subnet": "10.1.0.0/24"}))),
        add(&net_named("1.0.0", "a.b_c-d", json!({"subnet": "10.1.0.0/24"}))),
        Step::run("ADD", &json!({"cniVersion": "1.0.0", "ipam": {"subnet": "10.1.0.0/24", "dataDir": "@DIR@"}})),
    ];
    config_versions => vec![
        add(&json!({"name": "net1", "ipam": {"subnet": "10.1.0.0/24", "dataDir": "@DIR@"}})),
        add(&v4("9.9.9")).id("c2"),
        add(&v4("0.3.1")).id("c3"),
    ];
    requested_v4_mapped_and_canonical_names => {
        let c = net("1.0.0", json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "2001:0db8:0::/64", "rangeStart": "2001:db8::00a0"}]]}));
        vec![add(&c).args("IP=::ffff:10.1.0.9"), add(&c).id("c2"), del(&c)]
    };
    cni_args_several_ips => vec![add(&dual("1.0.0")).args("IP=10.1.0.5,2001:db8:1::5").ref_msg(4)];
    resolv_conf_missing => vec![add(&net("1.0.0", json!({"subnet": "10.1.0.0/24", "resolvConf": "/nonexistent/resolv.conf"}))).ref_msg(5),
                              add(&net("1.0.0", json!({"subnet": "10.1.0.0/24", "resolvConf": "/"}))).ref_msg(5)];
    store_oddities => {
        let c = v4("1.0.0");
        vec![Step::seed("net1/10.1.0.2", ""), Step::seed("net1/foo", "hi"), Step::seed("net1/10.1.0.3.tmp", "c9"),
             Step::seed("net1/last_reserved_ip.0", "banana"),
             add(&c), add(&c).id("c2"), Step::seed("net1/10.1.0.9", " c3 "), Step::seed("net1/10.1.0.10", "c4\neth0"),
             del(&c).id("c3"), del(&c).id("c4"), add(&c).id("c5"),
             // The reference deletes any file whose contents match the ID [D15].
             del(&c).id("c9").files(Files::OursUnchanged)]
    };
    container_id_looking_like_cursor => {
        // The reference takes `last_reserved_ip.0` for a legacy reservation
        // of a container named like the address it holds [D15].
        let c = v4("1.0.0");
        vec![Step::seed("net1/last_reserved_ip.0", "10.1.0.7"),
             Step::run("CHECK", &c).id("10.1.0.7").expect(Expect::OursRefuses { ours: 103 }),
             del(&c).id("10.1.0.7").files(Files::OursUnchanged)]
    };
    cursor_outside_range => {
        let c = v4("1.0.0");
        vec![Step::seed("net1/last_reserved_ip.0", "10.9.9.9"), add(&c), Step::seed("net1/last_reserved_ip.0", "2001:db8::1"), add(&c).id("c2")]
    };
    cursor_with_trailing_newline => {
        let c = v4("1.0.0");
        let ip = |a: &str| json!({"cniVersion": "1.0.0", "ips": [{"address": a, "gateway": "10.1.0.1"}], "dns": {}});
        vec![Step::seed("net1/last_reserved_ip.0", "10.1.0.7\n"),
             add(&c).expect(Expect::Outputs { theirs: ip("10.1.0.2/24"), ours: ip("10.1.0.8/24") }).files(Files::Diverged)]
    };

    // ---- deliberate differences (docs/DIFFERENCES.md D6, D13, D16) ----
    range_end_before_start_both_refuse => {
        let c = net("1.0.0", json!({"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.20", "rangeEnd": "10.1.0.10"}));
        vec![add(&c).config_error()]
    };
    relative_data_dir => {
        let c = net("1.0.0", json!({"subnet": "10.1.0.0/24", "dataDir": "relative-data"}));
        vec![add(&c).expect(Expect::OursRefuses { ours: 7 }).files(Files::Diverged)]
    };
    // D23: configs the reference refuses (ours serves) or turns into a broken result (ours refuses).
    decoding_leftovers => {
        let ok = |a: &str, g: &str| json!({"cniVersion": "1.0.0", "ips": [{"address": a, "gateway": g}], "dns": {}});
        vec![
            add(&net("1.0.0", json!({"subnet": "::ffff:10.1.0.0/120"})))
                .expect(Expect::RefRefuses { theirs: 999, ours: ok("10.1.0.2/24", "10.1.0.1") }).files(Files::Diverged),
            add(&net_named("1.0.0", "net2", json!({"subnet": "0.0.0.0/0"}))).id("c2")
                .expect(Expect::RefRefuses { theirs: 999, ours: ok("0.0.0.2/0", "0.0.0.1") }).files(Files::Diverged),
            add(&net_named("1.0.0", "net3", json!({"subnet": null, "type": 5, "ranges": [[{"subnet": "10.2.0.0/24"}]]}))).id("c3")
                .with(|a| {
                    if let Action::Run { stdin, .. } = a {
                        *stdin = stdin.replace("\"type\":\"host-local\"", "\"type\":5");
                    }
                }).expect(Expect::RefRefuses { theirs: 999, ours: ok("10.2.0.2/24", "10.2.0.1") }).files(Files::Diverged),
            add(&net_named("1.0.0", "net4", json!({"subnet": "10.3.0.0/24", "routes": [{"gw": "10.3.0.1"}]}))).id("c4")
                .expect(Expect::OursRefuses { ours: 7 }).files(Files::Diverged),
            add(&net_named("1.0.0", "net5", json!({"subnet": "10.4.0.0/24", "routes": [null]}))).id("c5")
                .expect(Expect::OursRefuses { ours: 7 }).files(Files::Diverged),
        ]
    };
    exclude_extension => {
        let c = net("1.0.0", json!({"ranges": [[{"subnet": "10.1.0.0/24", "exclude": ["10.1.0.2", "10.1.0.4/31"]}]]}));
        vec![add(&c).expect(Expect::Outputs {
            theirs: json!({"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.2/24", "gateway": "10.1.0.1"}], "dns": {}}),
            ours: json!({"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.3/24", "gateway": "10.1.0.1"}], "dns": {}}),
        }).files(Files::Diverged)]
    };
}
