//! GC, STATUS and `exclude` (CNI 1.1.0 and our own extension) through the
//! real binary: what GC removes and what it must leave alone, how it reports
//! errors, when STATUS says 50, and how excluded addresses are treated.
//! The reference (v1.1.1) has neither GC, STATUS nor `exclude`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::common::*;

const NET: &str = "gcnet";

fn ipam_two_sets() -> Value {
    json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "2001:db8::/120"}]]})
}

fn add(data: &Path, ipam: &Value, cid: &str, ifname: &str) -> Output {
    let conf = net_conf("1.1.0", NET, data, ipam.clone(), json!({}));
    run_plugin(&our_bin(), &cni_env("ADD", cid, ifname), &conf)
}

fn add_ok(data: &Path, ipam: &Value, cid: &str, ifname: &str) -> Vec<String> {
    let o = add(data, ipam, cid, ifname);
    assert_eq!(o.code, 0, "ADD {cid}/{ifname}: {o:?}");
    o.ips()
}

fn del(data: &Path, ipam: &Value, cid: &str, ifname: &str) -> Output {
    let conf = net_conf("1.1.0", NET, data, ipam.clone(), json!({}));
    run_plugin(&our_bin(), &cni_env("DEL", cid, ifname), &conf)
}

fn gc(data: &Path, ipam: &Value, version: &str, top: Value) -> Output {
    let conf = net_conf(version, NET, data, ipam.clone(), top);
    let env = [("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")];
    run_plugin(&our_bin(), &env, &conf)
}

fn status(data: &Path, ipam: &Value) -> Output {
    let conf = net_conf("1.1.0", NET, data, ipam.clone(), json!({}));
    run_plugin(&our_bin(), &[("CNI_COMMAND", "STATUS")], &conf)
}

fn msg(o: &Output) -> String {
    o.json()["msg"].as_str().unwrap_or_default().to_string()
}

fn attachments(list: &[(&str, &str)]) -> Value {
    Value::Array(
        list.iter()
            .map(|(c, i)| json!({"containerID": c, "ifname": i}))
            .collect(),
    )
}

/// The reservation files of the network directory: name -> content.
fn files(net: &Path) -> BTreeMap<String, Vec<u8>> {
    dir_names(net)
        .into_iter()
        .filter(|n| {
            std::fs::symlink_metadata(net.join(n))
                .map(|m| m.is_file())
                .unwrap_or(false)
        })
        .map(|n| {
            let c = std::fs::read(net.join(&n)).unwrap();
            (n, c)
        })
        .collect()
}

/// One scenario of GC with `key`: real reservations made by ADD, plus
/// planted legacy, damaged and foreign files.
fn gc_removes_exactly_the_unlisted(key: &str) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path();
    let ipam = ipam_two_sets();
    let net = data.join(NET);
    let a0 = add_ok(data, &ipam, "ctr-a", "eth0");
    let a1 = add_ok(data, &ipam, "ctr-a", "eth1");
    let b0 = add_ok(data, &ipam, "ctr-b", "eth0");
    let c0 = add_ok(data, &ipam, "ctr-c", "eth0");
    // Legacy (container ID only), damaged, foreign and untouchable files.
    let plant: &[(&str, &[u8])] = &[
        ("10.0.0.200", b"legacy-keep"),
        ("10.0.0.201", b"legacy-drop"),
        ("10.0.0.202", b""),
        ("10.0.0.203", b"not a valid id!\r\neth0"),
        ("10.0.0.204", b"ctr-a\r\nbad ifname with spaces"),
        ("10.0.0.205", b"\xff\xfe\r\neth0"),
        ("10.0.0.206", b"   \n"),
        ("2001:db8::c8", b"ctr-zz\r\neth0"),
        ("notes.txt", b"operator notes\n"),
        ("010.0.0.7", b"ctr-x\r\neth0"),
        ("2001:DB8::9", b"ctr-x\r\neth0"),
        ("2001:0db8::a", b"ctr-x\r\neth0"),
        ("last_reserved_ip.7", b"10.0.0.99"),
    ];
    for (n, c) in plant {
        std::fs::write(net.join(n), c).unwrap();
    }
    let before = files(&net);
    let valid = attachments(&[
        ("ctr-a", "eth0"),
        ("ctr-b", "eth0"),
        ("legacy-keep", "eth9"),
        ("ctr-never-seen", "eth0"),
    ]);
    let o = gc(data, &ipam, "1.1.0", json!({ key: valid }));
    assert_eq!(o.code, 0, "GC with {key}: {o:?}");
    assert!(o.stdout.trim().is_empty(), "GC prints nothing: {o:?}");
    let after = files(&net);

    let mut expected = before.clone();
    for ip in a1.iter().chain(&c0) {
        assert!(expected.remove(ip).is_some(), "{ip} was reserved");
    }
    for n in [
        "10.0.0.201",
        "10.0.0.202",
        "10.0.0.203",
        "10.0.0.204",
        "10.0.0.205",
        "10.0.0.206",
        "2001:db8::c8",
    ] {
        expected.remove(n);
    }
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "GC with {key} removed the wrong set"
    );
    assert_eq!(after, expected, "kept files are byte-for-byte unchanged");
    for ip in a0.iter().chain(&b0) {
        assert!(after.contains_key(ip), "valid reservation {ip} kept");
    }
    assert!(after.contains_key("lock") && after.contains_key("last_reserved_ip.0"));

    // The store is still consistent (index included): a removed attachment
    // can ADD again, a kept one is a duplicate, DEL of a kept one works.
    add_ok(data, &ipam, "ctr-c", "eth0");
    let o = add(data, &ipam, "ctr-a", "eth0");
    assert_eq!(o.err_code(), Some(102), "{o:?}");
    assert_eq!(del(data, &ipam, "ctr-b", "eth0").code, 0);
    for ip in &b0 {
        assert!(!net.join(ip).exists(), "{ip} released by DEL after GC");
    }
}

#[test]
fn gc_valid_attachments_removes_exactly_the_unlisted() {
    gc_removes_exactly_the_unlisted("cni.dev/valid-attachments");
}

#[test]
fn gc_libcni_attachments_key_removes_exactly_the_unlisted() {
    gc_removes_exactly_the_unlisted("cni.dev/attachments");
}

#[test]
fn gc_without_key_or_below_1_1_0_removes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path();
    let ipam = ipam_two_sets();
    add_ok(data, &ipam, "ctr-a", "eth0");
    std::fs::write(data.join(NET).join("10.0.0.100"), b"").unwrap();
    let before = snapshot_dir(data);

    let o = gc(data, &ipam, "1.1.0", json!({}));
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        snapshot_dir(data),
        before,
        "GC without a key removes nothing"
    );

    let o = gc(
        data,
        &ipam,
        "1.1.0",
        json!({"cni.dev/valid-attachments": null}),
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(snapshot_dir(data), before, "a null key is no key");

    for v in ["1.0.0", "0.4.0"] {
        let o = gc(data, &ipam, v, json!({"cni.dev/valid-attachments": []}));
        assert_eq!(o.err_code(), Some(1), "GC with cniVersion {v}: {o:?}");
        assert_ne!(o.code, 0);
        assert_eq!(snapshot_dir(data), before, "refused GC removes nothing");
    }

    let o = gc(
        data,
        &ipam,
        "1.1.0",
        json!({"cni.dev/valid-attachments": {"x": 1}}),
    );
    assert_eq!(o.err_code(), Some(7), "malformed list: {o:?}");
    assert!(msg(&o).contains("cni.dev/valid-attachments"), "{o:?}");
    let o = gc(
        data,
        &ipam,
        "1.1.0",
        json!({"cni.dev/valid-attachments": [{"containerID": "a"}]}),
    );
    assert_eq!(o.err_code(), Some(7), "entry without ifname: {o:?}");
    assert!(msg(&o).contains("[0].ifname"), "{o:?}");
    assert_eq!(snapshot_dir(data), before, "a refused list removes nothing");
}

#[test]
fn gc_keeps_going_past_errors_and_names_them_all() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path();
    let ipam = ipam_two_sets();
    let net = data.join(NET);
    let keep = add_ok(data, &ipam, "ctr-keep", "eth0");
    let drop1 = add_ok(data, &ipam, "ctr-drop", "eth0");
    // Non-empty directories where reservations should be: cannot be removed.
    std::fs::create_dir_all(net.join("10.0.0.50/inner")).unwrap();
    std::fs::write(net.join("10.0.0.51"), b"").unwrap();
    std::fs::create_dir_all(net.join("10.0.0.52/inner")).unwrap();
    // An empty directory and a symlink are damaged reservations: reclaimed,
    // the symlink's target untouched.
    std::fs::create_dir(net.join("10.0.0.53")).unwrap();
    let target = data.join("outside.txt");
    std::fs::write(&target, b"keep me").unwrap();
    std::os::unix::fs::symlink(&target, net.join("10.0.0.54")).unwrap();
    std::fs::write(net.join("10.0.0.55"), b"old-legacy").unwrap();

    let valid = attachments(&[("ctr-keep", "eth0")]);
    let o = gc(
        data,
        &ipam,
        "1.1.0",
        json!({"cni.dev/valid-attachments": valid}),
    );
    assert_eq!(o.err_code(), Some(5), "{o:?}");
    let m = msg(&o);
    assert!(
        m.contains("10.0.0.50") && m.contains("10.0.0.52"),
        "both failures named: {m}"
    );
    assert!(m.contains("2 problem"), "{m}");
    let names = dir_names(&net);
    for ip in &keep {
        assert!(names.contains(ip), "valid {ip} kept: {names:?}");
    }
    for n in
        drop1
            .iter()
            .map(String::as_str)
            .chain(["10.0.0.51", "10.0.0.53", "10.0.0.54", "10.0.0.55"])
    {
        assert!(
            !names.iter().any(|x| x == n),
            "{n} removed despite the errors: {names:?}"
        );
    }
    assert!(net.join("10.0.0.50/inner").is_dir() && net.join("10.0.0.52/inner").is_dir());
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");

    // Once the obstacle is gone, GC finishes the job.
    std::fs::remove_dir(net.join("10.0.0.50/inner")).unwrap();
    std::fs::remove_dir(net.join("10.0.0.52/inner")).unwrap();
    let o = gc(
        data,
        &ipam,
        "1.1.0",
        json!({"cni.dev/valid-attachments": valid}),
    );
    assert_eq!(o.code, 0, "{o:?}");
    let mut want = keep.clone();
    want.extend(["last_reserved_ip.0", "last_reserved_ip.1", "lock"].map(String::from));
    want.sort();
    assert_eq!(dir_names(&net), want);
}

// ---------------------------------------------------------------- STATUS

#[test]
fn status_ok_on_free_store_and_50_when_a_set_is_exhausted() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path();
    // Set 1: a /29 whose exclusions leave two addresses (.3 and .6).
    let ipam = json!({"ranges": [
        [{"subnet": "10.1.0.0/24"}],
        [{"subnet": "10.2.0.0/29", "exclude": ["10.2.0.2", "10.2.0.4/31"]}]
    ]});
    let o = status(data, &ipam);
    assert_eq!(o.code, 0, "fresh store: {o:?}");
    assert!(o.stdout.trim().is_empty(), "{o:?}");

    let first = add_ok(data, &ipam, "c1", "eth0");
    assert_eq!(status(data, &ipam).code, 0);
    let second = add_ok(data, &ipam, "c2", "eth0");
    let mut got: Vec<&String> = vec![&first[1], &second[1]];
    got.sort();
    assert_eq!(
        got,
        ["10.2.0.3", "10.2.0.6"],
        "only the non-excluded addresses"
    );

    let o = status(data, &ipam);
    assert_eq!(o.err_code(), Some(50), "set 1 exhausted: {o:?}");
    let m = msg(&o);
    assert!(m.contains("range set 1"), "names the exhausted set: {m}");
    assert!(!m.contains("range set 0"), "{m}");
    // ADD agrees.
    let o = add(data, &ipam, "c3", "eth0");
    assert_eq!(o.err_code(), Some(100), "{o:?}");
    assert!(
        msg(&o).starts_with("failed to allocate for range 1: no IP addresses available"),
        "{o:?}"
    );
    // STATUS is informational: it changed nothing, and DEL frees the set.
    assert_eq!(del(data, &ipam, "c1", "eth0").code, 0);
    assert_eq!(status(data, &ipam).code, 0);
}

#[test]
fn status_ignores_reservations_outside_the_sets() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path();
    let ipam =
        json!({"ranges": [[{"subnet": "10.2.0.0/29", "exclude": ["10.2.0.2/31", "10.2.0.4/31"]}]]});
    // Capacity 1 (.6). Many reservations left from an older, wider config.
    let net = data.join(NET);
    std::fs::create_dir_all(&net).unwrap();
    for i in 10..20 {
        std::fs::write(net.join(format!("10.9.0.{i}")), format!("old{i}\r\neth0")).unwrap();
    }
    let o = status(data, &ipam);
    assert_eq!(o.code, 0, "the set's one address is free: {o:?}");
    add_ok(data, &ipam, "c1", "eth0");
    let o = status(data, &ipam);
    assert_eq!(o.err_code(), Some(50), "{o:?}");
    assert!(msg(&o).contains("range set 0"), "{o:?}");
}

#[test]
fn status_right_at_5000_reservations() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path();
    let net = data.join(NET);
    std::fs::create_dir_all(&net).unwrap();
    // Set 0 is a /20: 4094 addresses minus the gateway = 4093, all taken;
    // 907 more reservations elsewhere: 5000 in all.
    let mut n = 0;
    for hi in 0..16u32 {
        for lo in 0..256u32 {
            let v = (hi << 8) | lo;
            if v == 0 || v == 1 || v == 4095 {
                continue;
            }
            std::fs::write(
                net.join(format!("10.20.{hi}.{lo}")),
                format!("f{v}\r\neth0"),
            )
            .unwrap();
            n += 1;
        }
    }
    for i in 0..907u32 {
        std::fs::write(
            net.join(format!("10.30.{}.{}", i / 200, i % 200 + 1)),
            format!("g{i}\r\neth0"),
        )
        .unwrap();
        n += 1;
    }
    assert_eq!(n, 5000);
    let full = json!({"ranges": [[{"subnet": "10.20.0.0/20"}], [{"subnet": "10.30.0.0/16"}]]});
    let o = status(data, &full);
    assert_eq!(o.err_code(), Some(50), "{o:?}");
    assert!(msg(&o).contains("range set 0"), "{o:?}");
    // Twice (the second time from the index).
    assert_eq!(status(data, &full).err_code(), Some(50));

    let o = del(data, &full, "f1000", "eth0");
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(status(data, &full).code, 0, "one free address is enough");
    let ips = add_ok(data, &full, "new", "eth0");
    assert_eq!(ips[0], format!("10.20.{}.{}", 1000 >> 8, 1000 & 255));
    assert_eq!(status(data, &full).err_code(), Some(50));

    // The same 5001 reservations in a roomy set: available.
    let roomy = json!({"ranges": [[{"subnet": "10.16.0.0/12"}]]});
    assert_eq!(status(data, &roomy).code, 0);
}

#[test]
fn status_50_when_the_network_dir_is_a_file() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path();
    std::fs::write(data.join(NET), b"not a directory").unwrap();
    let ipam = ipam_two_sets();
    let o = status(data, &ipam);
    assert_eq!(o.err_code(), Some(50), "{o:?}");
    assert!(msg(&o).contains(NET), "{o:?}");
    let o = add(data, &ipam, "c1", "eth0");
    assert_eq!(o.err_code(), Some(5), "{o:?}");
    assert_eq!(del(data, &ipam, "c1", "eth0").err_code(), Some(5));
    let o = gc(
        data,
        &ipam,
        "1.1.0",
        json!({"cni.dev/valid-attachments": []}),
    );
    assert_eq!(o.err_code(), Some(5), "{o:?}");
    assert_eq!(std::fs::read(data.join(NET)).unwrap(), b"not a directory");

    // A data directory that is a file.
    let f = data.join("datafile");
    std::fs::write(&f, b"x").unwrap();
    let o = status(&f, &ipam);
    assert_eq!(o.err_code(), Some(50), "{o:?}");
    assert_eq!(std::fs::read(&f).unwrap(), b"x");
}

#[test]
fn status_50_when_the_store_is_read_only() {
    if !can_mount_or_skip("gc_status::status_50_when_the_store_is_read_only") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let ipam = ipam_two_sets();
    // A prepared store (with reservations), and an empty one, each read-only.
    let prepared = d.path().join("prepared");
    std::fs::create_dir(&prepared).unwrap();
    add_ok(&prepared, &ipam, "c1", "eth0");
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for (src, what) in [(&prepared, "prepared"), (&empty, "empty")] {
        let mnt = d.path().join(format!("ro-{what}"));
        std::fs::create_dir(&mnt).unwrap();
        let _g = MountGuard::bind_ro(src, &mnt).unwrap();
        let o = status(&mnt, &ipam);
        assert_eq!(o.err_code(), Some(50), "{what} read-only store: {o:?}");
        assert!(msg(&o).to_lowercase().contains("read-only"), "{o:?}");
    }

    // A tmpfs remounted read-only.
    let t = d.path().join("tmpfs");
    std::fs::create_dir(&t).unwrap();
    let g = MountGuard::tmpfs(&t, "size=256k,mode=0755").unwrap();
    add_ok(&t, &ipam, "c1", "eth0");
    assert_eq!(status(&t, &ipam).code, 0);
    g.remount_ro().unwrap();
    let o = status(&t, &ipam);
    assert_eq!(o.err_code(), Some(50), "remounted ro: {o:?}");
}

// --------------------------------------------------------------- exclude

#[test]
fn exclude_requested_address_refused_and_allocation_skips() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path();
    let ipam = json!({"ranges": [[
        {"subnet": "10.5.0.0/28", "exclude": ["10.5.0.2", "10.5.0.8/30", "10.5.0.14"]}
    ]]});
    let net = data.join(NET);
    // Requested through CNI_ARGS, args.cni.ips and runtimeConfig.ips.
    let conf = net_conf("1.1.0", NET, data, ipam.clone(), json!({}));
    let mut env = cni_env("ADD", "req", "eth0");
    env.push(("CNI_ARGS", "IP=10.5.0.9"));
    let o = run_plugin(&our_bin(), &env, &conf);
    assert_eq!(o.err_code(), Some(101), "{o:?}");
    let m = msg(&o);
    assert!(
        m.contains("10.5.0.9") && m.contains("excluded"),
        "clear message: {m}"
    );
    for top in [
        json!({"args": {"cni": {"ips": ["10.5.0.14"]}}}),
        json!({"runtimeConfig": {"ips": ["10.5.0.2/28"]}}),
    ] {
        let conf = net_conf("1.1.0", NET, data, ipam.clone(), top.clone());
        let o = run_plugin(&our_bin(), &cni_env("ADD", "req", "eth0"), &conf);
        assert_eq!(o.err_code(), Some(101), "{top}: {o:?}");
        assert!(msg(&o).contains("excluded"), "{o:?}");
    }
    let reserved: Vec<String> = dir_names(&net)
        .into_iter()
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect();
    assert!(
        reserved.is_empty(),
        "refused ADDs reserve nothing: {reserved:?}"
    );

    // Allocation: .1 gateway, .2, .8-.11, .14 excluded: 3-7, 12, 13 remain.
    let mut got = Vec::new();
    for i in 0..7 {
        got.push(add_ok(data, &ipam, &format!("c{i}"), "eth0")[0].clone());
    }
    assert_eq!(
        got,
        [
            "10.5.0.3",
            "10.5.0.4",
            "10.5.0.5",
            "10.5.0.6",
            "10.5.0.7",
            "10.5.0.12",
            "10.5.0.13"
        ]
    );
    assert_eq!(add(data, &ipam, "c8", "eth0").err_code(), Some(100));
    // A non-excluded requested address still works once free.
    assert_eq!(del(data, &ipam, "c6", "eth0").code, 0);
    let mut env = cni_env("ADD", "req", "eth0");
    env.push(("CNI_ARGS", "IP=10.5.0.13"));
    let o = run_plugin(&our_bin(), &env, &conf);
    assert_eq!(o.code, 0, "{o:?}");
}

#[test]
fn exclude_outside_the_subnet_is_invalid_config() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path();
    for (excl, idx, bad) in [
        (json!(["10.5.0.3", "10.6.0.1"]), 1, "10.6.0.1"),
        (json!(["10.5.0.0/23"]), 0, "10.5.0.0/23"),
        (json!(["2001:db8::1"]), 0, "2001:db8::1"),
        (json!(["10.5.0.3", "10.5.0.4", "bogus"]), 2, "bogus"),
    ] {
        let ipam = json!({"ranges": [[{"subnet": "10.5.0.0/28", "exclude": excl}]]});
        let o = add(data, &ipam, "c1", "eth0");
        assert_eq!(o.err_code(), Some(7), "{excl}: {o:?}");
        let m = msg(&o);
        let field = format!("ipam.ranges[0][0].exclude[{idx}]");
        assert!(m.contains(&field) && m.contains(bad), "names {field}: {m}");
        assert_eq!(status(data, &ipam).err_code(), Some(7));
    }
    assert!(
        !data.join(NET).exists(),
        "an invalid config touches nothing"
    );
}
