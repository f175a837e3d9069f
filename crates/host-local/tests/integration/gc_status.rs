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
    let gcnet = our_net(NET, data, ipam_two_sets());
    let net = data.join(NET);
    let a0 = gcnet.add_ok("ctr-a", "eth0");
    let a1 = gcnet.add_ok("ctr-a", "eth1");
    let b0 = gcnet.add_ok("ctr-b", "eth0");
    let c0 = gcnet.add_ok("ctr-c", "eth0");
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
    let o = gcnet.gc_with(json!({ key: valid }));
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
    gcnet.add_ok("ctr-c", "eth0");
    let o = gcnet.add("ctr-a", "eth0");
    assert_eq!(o.err_code(), Some(102), "{o:?}");
    assert_eq!(gcnet.del("ctr-b", "eth0").code, 0);
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
    let gcnet = our_net(NET, data, ipam_two_sets());
    gcnet.add_ok("ctr-a", "eth0");
    std::fs::write(data.join(NET).join("10.0.0.100"), b"").unwrap();
    let before = snapshot_dir(data);

    let o = gcnet.gc_with(json!({}));
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        snapshot_dir(data),
        before,
        "GC without a key removes nothing"
    );

    let o = gcnet.gc_with(json!({"cni.dev/valid-attachments": null}));
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(snapshot_dir(data), before, "a null key is no key");

    for v in ["1.0.0", "0.4.0"] {
        let o = gcnet.with_version(v).gc(&[]);
        assert_eq!(o.err_code(), Some(1), "GC with cniVersion {v}: {o:?}");
        assert_ne!(o.code, 0);
        assert_eq!(snapshot_dir(data), before, "refused GC removes nothing");
    }

    let o = gcnet.gc_with(json!({"cni.dev/valid-attachments": {"x": 1}}));
    assert_eq!(o.err_code(), Some(7), "malformed list: {o:?}");
    assert!(o.msg().contains("cni.dev/valid-attachments"), "{o:?}");
    let o = gcnet.gc_with(json!({"cni.dev/valid-attachments": [{"containerID": "a"}]}));
    assert_eq!(o.err_code(), Some(7), "entry without ifname: {o:?}");
    assert!(o.msg().contains("[0].ifname"), "{o:?}");
    assert_eq!(snapshot_dir(data), before, "a refused list removes nothing");
}

#[test]
fn gc_keeps_going_past_errors_and_names_them_all() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path();
    let gcnet = our_net(NET, data, ipam_two_sets());
    let net = data.join(NET);
    let keep = gcnet.add_ok("ctr-keep", "eth0");
    let drop1 = gcnet.add_ok("ctr-drop", "eth0");
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

    let valid = [("ctr-keep", "eth0")];
    let o = gcnet.gc(&valid);
    assert_eq!(o.err_code(), Some(5), "{o:?}");
    let m = o.msg();
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
    let o = gcnet.gc(&valid);
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
    let gcnet = our_net(
        NET,
        data,
        json!({"ranges": [
            [{"subnet": "10.1.0.0/24"}],
            [{"subnet": "10.2.0.0/29", "exclude": ["10.2.0.2", "10.2.0.4/31"]}]
        ]}),
    );
    let o = gcnet.status();
    assert_eq!(o.code, 0, "fresh store: {o:?}");
    assert!(o.stdout.trim().is_empty(), "{o:?}");

    let first = gcnet.add_ok("c1", "eth0");
    assert_eq!(gcnet.status().code, 0);
    let second = gcnet.add_ok("c2", "eth0");
    let mut got: Vec<&String> = vec![&first[1], &second[1]];
    got.sort();
    assert_eq!(
        got,
        ["10.2.0.3", "10.2.0.6"],
        "only the non-excluded addresses"
    );

    let o = gcnet.status();
    assert_eq!(o.err_code(), Some(50), "set 1 exhausted: {o:?}");
    let m = o.msg();
    assert!(m.contains("range set 1"), "names the exhausted set: {m}");
    assert!(!m.contains("range set 0"), "{m}");
    // ADD agrees.
    let o = gcnet.add("c3", "eth0");
    assert_eq!(o.err_code(), Some(100), "{o:?}");
    assert!(
        o.msg()
            .starts_with("failed to allocate for range 1: no IP addresses available"),
        "{o:?}"
    );
    // STATUS is informational: it changed nothing, and DEL frees the set.
    assert_eq!(gcnet.del("c1", "eth0").code, 0);
    assert_eq!(gcnet.status().code, 0);
}

#[test]
fn status_ignores_reservations_outside_the_sets() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path();
    let gcnet = our_net(
        NET,
        data,
        json!({"ranges": [[{"subnet": "10.2.0.0/29", "exclude": ["10.2.0.2/31", "10.2.0.4/31"]}]]}),
    );
    // Capacity 1 (.6). Many reservations left from an older, wider config.
    let net = data.join(NET);
    std::fs::create_dir_all(&net).unwrap();
    for i in 10..20 {
        std::fs::write(net.join(format!("10.9.0.{i}")), format!("old{i}\r\neth0")).unwrap();
    }
    let o = gcnet.status();
    assert_eq!(o.code, 0, "the set's one address is free: {o:?}");
    gcnet.add_ok("c1", "eth0");
    let o = gcnet.status();
    assert_eq!(o.err_code(), Some(50), "{o:?}");
    assert!(o.msg().contains("range set 0"), "{o:?}");
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
    let full = our_net(
        NET,
        data,
        json!({"ranges": [[{"subnet": "10.20.0.0/20"}], [{"subnet": "10.30.0.0/16"}]]}),
    );
    let o = full.status();
    assert_eq!(o.err_code(), Some(50), "{o:?}");
    assert!(o.msg().contains("range set 0"), "{o:?}");
    // Twice (the second time from the index).
    assert_eq!(full.status().err_code(), Some(50));

    let o = full.del("f1000", "eth0");
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(full.status().code, 0, "one free address is enough");
    let ips = full.add_ok("new", "eth0");
    assert_eq!(ips[0], format!("10.20.{}.{}", 1000 >> 8, 1000 & 255));
    assert_eq!(full.status().err_code(), Some(50));

    // The same 5001 reservations in a roomy set: available.
    let roomy = full.with_ipam(json!({"ranges": [[{"subnet": "10.16.0.0/12"}]]}));
    assert_eq!(roomy.status().code, 0);
}

#[test]
fn status_50_when_the_network_dir_is_a_file() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path();
    std::fs::write(data.join(NET), b"not a directory").unwrap();
    let gcnet = our_net(NET, data, ipam_two_sets());
    let o = gcnet.status();
    assert_eq!(o.err_code(), Some(50), "{o:?}");
    assert!(o.msg().contains(NET), "{o:?}");
    let o = gcnet.add("c1", "eth0");
    assert_eq!(o.err_code(), Some(5), "{o:?}");
    assert_eq!(gcnet.del("c1", "eth0").err_code(), Some(5));
    let o = gcnet.gc(&[]);
    assert_eq!(o.err_code(), Some(5), "{o:?}");
    assert_eq!(std::fs::read(data.join(NET)).unwrap(), b"not a directory");

    // A data directory that is a file.
    let f = data.join("datafile");
    std::fs::write(&f, b"x").unwrap();
    let o = gcnet.with_data(&f).status();
    assert_eq!(o.err_code(), Some(50), "{o:?}");
    assert_eq!(std::fs::read(&f).unwrap(), b"x");
}

#[test]
fn status_50_when_the_store_is_read_only() {
    if !can_mount_or_skip("gc_status::status_50_when_the_store_is_read_only") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    // A prepared store (with reservations), and an empty one, each read-only.
    let prepared = d.path().join("prepared");
    std::fs::create_dir(&prepared).unwrap();
    let gcnet = our_net(NET, &prepared, ipam_two_sets());
    gcnet.add_ok("c1", "eth0");
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for (src, what) in [(&prepared, "prepared"), (&empty, "empty")] {
        let mnt = d.path().join(format!("ro-{what}"));
        std::fs::create_dir(&mnt).unwrap();
        let _g = MountGuard::bind_ro(src, &mnt).unwrap();
        let o = gcnet.with_data(&mnt).status();
        assert_eq!(o.err_code(), Some(50), "{what} read-only store: {o:?}");
        assert!(o.msg().to_lowercase().contains("read-only"), "{o:?}");
    }

    // A tmpfs remounted read-only.
    let t = d.path().join("tmpfs");
    std::fs::create_dir(&t).unwrap();
    let g = MountGuard::tmpfs(&t, "size=256k,mode=0755").unwrap();
    let tmpfs = gcnet.with_data(&t);
    tmpfs.add_ok("c1", "eth0");
    assert_eq!(tmpfs.status().code, 0);
    g.remount_ro().unwrap();
    let o = tmpfs.status();
    assert_eq!(o.err_code(), Some(50), "remounted ro: {o:?}");
}

// --------------------------------------------------------------- exclude

#[test]
fn exclude_requested_address_refused_and_allocation_skips() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path();
    let gcnet = our_net(
        NET,
        data,
        json!({"ranges": [[
            {"subnet": "10.5.0.0/28", "exclude": ["10.5.0.2", "10.5.0.8/30", "10.5.0.14"]}
        ]]}),
    );
    let net = data.join(NET);
    // Requested through CNI_ARGS, args.cni.ips and runtimeConfig.ips.
    let o = gcnet.add_args("req", "eth0", "IP=10.5.0.9");
    assert_eq!(o.err_code(), Some(101), "{o:?}");
    let m = o.msg();
    assert!(
        m.contains("10.5.0.9") && m.contains("excluded"),
        "clear message: {m}"
    );
    for top in [
        json!({"args": {"cni": {"ips": ["10.5.0.14"]}}}),
        json!({"runtimeConfig": {"ips": ["10.5.0.2/28"]}}),
    ] {
        let o = gcnet.with_top(top.clone()).add("req", "eth0");
        assert_eq!(o.err_code(), Some(101), "{top}: {o:?}");
        assert!(o.msg().contains("excluded"), "{o:?}");
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
        got.push(gcnet.add_ok(&format!("c{i}"), "eth0")[0].clone());
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
    assert_eq!(gcnet.add("c8", "eth0").err_code(), Some(100));
    // A non-excluded requested address still works once free.
    assert_eq!(gcnet.del("c6", "eth0").code, 0);
    let o = gcnet.add_args("req", "eth0", "IP=10.5.0.13");
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
        let gcnet = our_net(
            NET,
            data,
            json!({"ranges": [[{"subnet": "10.5.0.0/28", "exclude": excl}]]}),
        );
        let o = gcnet.add("c1", "eth0");
        assert_eq!(o.err_code(), Some(7), "{excl}: {o:?}");
        let m = o.msg();
        let field = format!("ipam.ranges[0][0].exclude[{idx}]");
        assert!(m.contains(&field) && m.contains(bad), "names {field}: {m}");
        assert_eq!(gcnet.status().err_code(), Some(7));
    }
    assert!(
        !data.join(NET).exists(),
        "an invalid config touches nothing"
    );
}
