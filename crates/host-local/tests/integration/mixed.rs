//! Mixed use of one data directory by the reference and ours: each can pick
//! up what the other did, and our index is always checked against the
//! directory (hand edits and reference writes while our index is warm).
//!
//! Where possible a mixed sequence is replayed with the reference alone in a
//! second directory and the two network directories must be equal (names and
//! contents), as must every successful output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::common::{cni_env, our_bin, our_net, ref_bin_or_skip, reservations, Net, Output};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Ref,
    Ours,
}
use Who::{Ours, Ref};

/// One invocation of a mixed sequence.
#[derive(Clone, Debug)]
struct Op {
    who: Who,
    cmd: &'static str,
    id: &'static str,
    args: Option<&'static str>,
}

fn op(who: Who, cmd: &'static str, id: &'static str) -> Op {
    Op {
        who,
        cmd,
        id,
        args: None,
    }
}

fn op_args(who: Who, cmd: &'static str, id: &'static str, args: &'static str) -> Op {
    Op {
        who,
        cmd,
        id,
        args: Some(args),
    }
}

/// Network mnet with `ipam` in `dir` (cniVersion 1.0.0), run by ours
/// unless an `Op` says otherwise.
fn net_in(dir: &Path, ipam: Value) -> Net {
    our_net("mnet", dir, ipam).with_version("1.0.0")
}

fn v4_29() -> Value {
    json!({"subnet": "10.4.0.0/29"})
}

fn dual() -> Value {
    json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "2001:db8:1::/64"}]]})
}

struct Ctx {
    refb: PathBuf,
}

impl Ctx {
    fn new(what: &str) -> Option<Ctx> {
        ref_bin_or_skip(&format!("mixed::{what}")).map(|refb| Ctx { refb })
    }
    fn bin(&self, who: Who) -> PathBuf {
        match who {
            Ref => self.refb.clone(),
            Ours => our_bin(),
        }
    }
    fn run(&self, o: &Op, net: &Net) -> Output {
        let mut env = cni_env(o.cmd, o.id, "eth0");
        if let Some(a) = o.args {
            env.push(("CNI_ARGS", a));
        }
        net.with_bin(self.bin(o.who)).run(&env)
    }
    fn ok(&self, o: Op, net: &Net) -> Value {
        let out = self.run(&o, net);
        assert_eq!(out.code, 0, "{o:?} failed: {out:?}");
        out.json()
    }
}

/// Reservation files and cursor files of a network dir (names -> contents).
fn net_files(net: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(net).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        out.insert(name, std::fs::read_to_string(e.path()).unwrap());
    }
    out
}

/// Runs `ops` mixed in one directory and with the reference alone in
/// another; every output (exit code, success JSON) and the final network
/// directories must be equal.
/// Returns the temp dir; the mixed network dir is `<it>/mixed/mnet`.
fn replay_against_reference(ctx: &Ctx, ipam: Value, ops: &[Op]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let (mixed, pure) = (t.path().join("mixed"), t.path().join("pure"));
    let (cm, cp) = (net_in(&mixed, ipam.clone()), net_in(&pure, ipam));
    for (i, o) in ops.iter().enumerate() {
        let m = ctx.run(o, &cm);
        let p = ctx.run(
            &Op {
                who: Ref,
                ..o.clone()
            },
            &cp,
        );
        assert_eq!(
            m.code, p.code,
            "step {i} {o:?}: exit codes: mixed {m:?} pure {p:?}"
        );
        if m.code == 0 {
            assert_eq!(m.json(), p.json(), "step {i} {o:?}: outputs");
        }
        assert_eq!(
            net_files(&mixed.join("mnet")),
            net_files(&pure.join("mnet")),
            "step {i} {o:?}: network directories differ"
        );
    }
    t
}

fn mixed_net(t: &tempfile::TempDir) -> PathBuf {
    t.path().join("mixed/mnet")
}

#[test]
fn reference_add_then_our_del() {
    let Some(ctx) = Ctx::new("reference_add_then_our_del") else {
        return;
    };
    let t = replay_against_reference(
        &ctx,
        dual(),
        &[
            op(Ref, "ADD", "a"),
            op(Ref, "ADD", "b"),
            op(Ours, "DEL", "a"),
            op(Ours, "DEL", "b"),
            op(Ours, "DEL", "b"),
        ],
    );
    let net = mixed_net(&t);
    assert!(reservations(&net).is_empty(), "{:?}", reservations(&net));
    let names: Vec<String> = net_files(&net).into_keys().collect();
    assert_eq!(names, ["last_reserved_ip.0", "last_reserved_ip.1", "lock"]);
}

#[test]
fn our_add_then_reference_del() {
    let Some(ctx) = Ctx::new("our_add_then_reference_del") else {
        return;
    };
    let t = replay_against_reference(
        &ctx,
        dual(),
        &[
            op(Ours, "ADD", "a"),
            op(Ours, "ADD", "b"),
            op(Ref, "DEL", "a"),
            op(Ours, "ADD", "c"),
            op(Ref, "DEL", "b"),
        ],
    );
    let net = mixed_net(&t);
    assert_eq!(reservations(&net).len(), 2, "{:?}", reservations(&net));
    // Our index must know that `a` is gone: CHECK fails (103), re-ADD works.
    let c = net_in(net.parent().unwrap(), dual());
    let out = ctx.run(&op(Ours, "CHECK", "a"), &c);
    assert_eq!(out.err_code(), Some(103), "{out:?}");
    let r = ctx.ok(op(Ours, "ADD", "a"), &c);
    assert_eq!(r["ips"][0]["address"], json!("10.1.0.5/24"), "{r}");
}

#[test]
fn reference_add_then_our_add_is_duplicate() {
    let Some(ctx) = Ctx::new("reference_add_then_our_add_is_duplicate") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let c = net_in(t.path(), dual());
    ctx.ok(op(Ours, "ADD", "warm"), &c); // our index exists before the reference writes
    ctx.ok(op(Ref, "ADD", "a"), &c);
    let before = net_files(&t.path().join("mnet"));
    let out = ctx.run(&op(Ours, "ADD", "a"), &c);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.err_code(), Some(102), "{out:?}");
    assert_eq!(
        net_files(&t.path().join("mnet")),
        before,
        "a refused ADD changed the store"
    );
}

#[test]
fn our_add_continues_reference_cursor() {
    let Some(ctx) = Ctx::new("our_add_continues_reference_cursor") else {
        return;
    };
    let t = replay_against_reference(
        &ctx,
        v4_29(),
        &[
            op(Ref, "ADD", "a"),
            op(Ref, "ADD", "b"),
            op(Ref, "ADD", "c"),
            op(Ref, "DEL", "a"),
            op(Ours, "ADD", "d"), // .5, not .2
            op(Ref, "ADD", "e"),
            op(Ours, "ADD", "f"), // wraps to .2
            op(Ref, "DEL", "c"),
            op(Ours, "ADD", "g"),
        ],
    );
    let net = mixed_net(&t);
    assert_eq!(
        reservations(&net)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>(),
        [
            "10.4.0.2=f\r\neth0",
            "10.4.0.3=b\r\neth0",
            "10.4.0.4=g\r\neth0",
            "10.4.0.5=d\r\neth0",
            "10.4.0.6=e\r\neth0"
        ]
    );
}

#[test]
fn reference_writes_while_our_index_is_warm() {
    let Some(ctx) = Ctx::new("reference_writes_while_our_index_is_warm") else {
        return;
    };
    replay_against_reference(
        &ctx,
        v4_29(),
        &[
            op(Ours, "ADD", "a"),
            op(Ours, "ADD", "b"),
            op(Ours, "DEL", "a"),
            // The reference takes an address ahead of our cursor, and re-takes .2.
            op_args(Ref, "ADD", "x", "IP=10.4.0.4"),
            op_args(Ref, "ADD", "y", "IP=10.4.0.2"),
            op(Ours, "ADD", "c"), // after y's .2: skips b's .3 and x's .4, gets .5
            op(Ref, "ADD", "z"),
            op(Ours, "ADD", "d"), // full: fails on both sides without a trace
            op(Ref, "DEL", "x"),
            op(Ours, "ADD", "e"),
        ],
    );
}

#[test]
fn reference_fills_network_behind_our_back() {
    let Some(ctx) = Ctx::new("reference_fills_network_behind_our_back") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let c = net_in(t.path(), v4_29());
    ctx.ok(op(Ours, "ADD", "a"), &c);
    for id in ["b", "c", "d", "e"] {
        ctx.ok(op(Ref, "ADD", id), &c);
    }
    let out = ctx.run(&op(Ours, "ADD", "f"), &c);
    assert_eq!(
        out.err_code(),
        Some(100),
        "our index missed the reference's reservations: {out:?}"
    );
    ctx.ok(op(Ref, "DEL", "c"), &c);
    let r = ctx.ok(op(Ours, "ADD", "f"), &c);
    assert_eq!(r["ips"][0]["address"], json!("10.4.0.4/29"), "{r}");
}

#[test]
fn operator_deletes_reservation_by_hand() {
    let Some(_ctx) = Ctx::new("operator_deletes_reservation_by_hand") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let ours = net_in(t.path(), v4_29());
    let net = t.path().join("mnet");
    for id in ["a", "b", "c", "d", "e"] {
        assert_eq!(ours.add(id, "eth0").code, 0);
    }
    assert_eq!(ours.add("f", "eth0").err_code(), Some(100));
    std::fs::remove_file(net.join("10.4.0.3")).unwrap(); // b's
                                                         // The freed address is handed out again (by request and by search).
    let r = ours.add_args("f", "eth0", "IP=10.4.0.3");
    assert_eq!(r.code, 0, "{r:?}");
    std::fs::remove_file(net.join("10.4.0.3")).unwrap();
    let r = ours.add("g", "eth0").json();
    assert_eq!(r["ips"][0]["address"], json!("10.4.0.3/29"), "{r}");
    // b no longer holds anything.
    let out = ours.check("b", "eth0");
    assert_eq!(out.err_code(), Some(103), "{out:?}");
    let out = ours.del("b", "eth0");
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        std::fs::read_to_string(net.join("10.4.0.3")).unwrap(),
        "g\r\neth0"
    );
    // A file written by hand is honoured too.
    std::fs::remove_file(net.join("10.4.0.2")).unwrap();
    std::fs::write(net.join("10.4.0.2"), "hand\r\neth0").unwrap();
    assert_eq!(
        ours.add_args("h", "eth0", "IP=10.4.0.2").err_code(),
        Some(101)
    );
    assert_eq!(ours.add("hand", "eth0").err_code(), Some(102));
    let out = ours.del("hand", "eth0");
    assert_eq!(out.code, 0);
    assert!(!net.join("10.4.0.2").exists());
}

#[test]
fn legacy_file_from_reference_released_by_our_del() {
    let Some(ctx) = Ctx::new("legacy_file_from_reference_released_by_our_del") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let c = net_in(t.path(), v4_29());
    let net = t.path().join("mnet");
    ctx.ok(op(Ours, "ADD", "a"), &c); // warm index
                                      // An old reference wrote a one-line reservation.
    std::fs::write(net.join("10.4.0.5"), "oldc").unwrap();
    let out = ctx.run(&op_args(Ours, "ADD", "x", "IP=10.4.0.5"), &c);
    assert_eq!(out.err_code(), Some(101), "{out:?}");
    let out = ctx.run(&op(Ours, "ADD", "oldc"), &c);
    assert_eq!(out.err_code(), Some(102), "{out:?}");
    let out = ctx.run(&op(Ours, "DEL", "oldc"), &c);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        !net.join("10.4.0.5").exists(),
        "legacy reservation not released"
    );
    // And one the reference itself sees as taken, released by us, is free for it.
    std::fs::write(net.join("10.4.0.6"), "oldd\n").unwrap();
    ctx.ok(op(Ours, "DEL", "oldd"), &c);
    let r = ctx.ok(op_args(Ref, "ADD", "y", "IP=10.4.0.6"), &c);
    assert_eq!(r["ips"][0]["address"], json!("10.4.0.6/29"));
}
