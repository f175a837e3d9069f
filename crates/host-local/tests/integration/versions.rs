//! Our binary over every spec version: exact ADD results, CHECK, DEL,
//! VERSION, GC and STATUS (1.1.0, and their refusal below), the about text,
//! and error objects.

use std::path::Path;

use serde_json::{json, Value};

use super::common::{cni_env, our_bin, our_net, reservations, run_plugin, Net, Output};

const ALL: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

const RESOLV: &str = "# comment\n; another comment\nnameserver 10.9.9.9\nnameserver 2001:db8::53\n\
domain example.test\nsearch a.test b.test\noptions ndots:2 timeout:1\n";

fn dns() -> Value {
    json!({"nameservers": ["10.9.9.9", "2001:db8::53"], "domain": "example.test",
           "search": ["a.test", "b.test"], "options": ["ndots:2", "timeout:1"]})
}

/// Network vnet at `version`: dual stack with routes and `<dir>/resolv.conf`,
/// its data in `<dir>/data`.
fn net_at(version: &str, dir: &Path) -> Net {
    our_net(
        "vnet",
        &dir.join("data"),
        json!({
            "ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "2001:db8:1::/64"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}, {"dst": "::/0"}],
            "resolvConf": dir.join("resolv.conf"),
        }),
    )
    .with_version(version)
}

/// The exact ADD result of `conf` on a fresh store, per version.
fn expected_add(version: &str) -> Value {
    match version {
        "0.1.0" | "0.2.0" => json!({
            "cniVersion": version,
            "ip4": {"ip": "10.1.0.2/24", "gateway": "10.1.0.1",
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}]},
            "ip6": {"ip": "2001:db8:1::2/64", "gateway": "2001:db8:1::1", "routes": [{"dst": "::/0"}]},
            "dns": dns(),
        }),
        "0.3.0" | "0.3.1" | "0.4.0" => json!({
            "cniVersion": version,
            "ips": [
                {"version": "4", "address": "10.1.0.2/24", "gateway": "10.1.0.1"},
                {"version": "6", "address": "2001:db8:1::2/64", "gateway": "2001:db8:1::1"},
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}, {"dst": "::/0"}],
            "dns": dns(),
        }),
        "1.0.0" | "1.1.0" => json!({
            "cniVersion": version,
            "ips": [
                {"address": "10.1.0.2/24", "gateway": "10.1.0.1"},
                {"address": "2001:db8:1::2/64", "gateway": "2001:db8:1::1"},
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}, {"dst": "::/0"}],
            "dns": dns(),
        }),
        v => panic!("unknown version {v}"),
    }
}

fn setup() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("resolv.conf"), RESOLV).unwrap();
    t
}

/// Asserts a failure with exactly this error object shape.
fn assert_error(out: &Output, version: &str, code: u64) {
    assert_eq!(out.code, 1, "exit code: {out:?}");
    let v = out.json();
    assert_eq!(v["cniVersion"], json!(version), "{v}");
    assert_eq!(v["code"], json!(code), "{v}");
    assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert!(
        keys.iter()
            .all(|k| ["cniVersion", "code", "msg", "details"].contains(&k.as_str())),
        "{v}"
    );
}

fn assert_silent_success(out: &Output) {
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "", "{out:?}");
}

#[test]
fn add_check_del_every_version() {
    for v in ALL {
        let t = setup();
        let vnet = net_at(v, t.path());
        let net = t.path().join("data/vnet");

        let add = vnet.add("c1", "eth0");
        assert_eq!(add.code, 0, "{v}: {add:?}");
        assert_eq!(add.json(), expected_add(v), "{v}: ADD result");
        assert_eq!(
            reservations(&net),
            [("10.1.0.2", "c1\r\neth0"), ("2001:db8:1::2", "c1\r\neth0")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            "{v}: store after ADD"
        );
        assert_eq!(
            std::fs::read_to_string(net.join("last_reserved_ip.0")).unwrap(),
            "10.1.0.2"
        );
        assert_eq!(
            std::fs::read_to_string(net.join("last_reserved_ip.1")).unwrap(),
            "2001:db8:1::2"
        );

        let prev = add.json();
        let check = vnet.check_prev("c1", "eth0", &prev);
        if v < "0.4.0" {
            assert_error(&check, v, 1);
        } else {
            assert_silent_success(&check);
            // A prevResult with another address is a mismatch (104).
            let mut wrong = prev.clone();
            wrong["ips"][0]["address"] = json!("10.1.0.77/24");
            assert_error(&vnet.check_prev("c1", "eth0", &wrong), v, 104);
            assert_error(&vnet.check_prev("other", "eth0", &prev), v, 103);
        }

        // A second ADD of the same attachment is a duplicate.
        assert_error(&vnet.add("c1", "eth0"), v, 102);

        assert_silent_success(&vnet.del("c1", "eth0"));
        assert!(
            reservations(&net).is_empty(),
            "{v}: DEL left {:?}",
            reservations(&net)
        );
        assert_silent_success(&vnet.del("c1", "eth0"));
        if v >= "0.4.0" {
            assert_error(&vnet.check_prev("c1", "eth0", &prev), v, 103);
        }
    }
}

#[test]
fn version_command_every_version() {
    let all = json!(ALL);
    for v in ALL {
        let out = run_plugin(
            &our_bin(),
            &[("CNI_COMMAND", "VERSION")],
            json!({"cniVersion": v}).to_string().as_bytes(),
        );
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(
            out.json(),
            json!({"cniVersion": v, "supportedVersions": all})
        );
    }
    let out = run_plugin(&our_bin(), &[("CNI_COMMAND", "VERSION")], b"");
    assert_eq!(
        out.json(),
        json!({"cniVersion": "1.1.0", "supportedVersions": all})
    );
}

#[test]
fn about_text_without_command() {
    let out = run_plugin(&our_bin(), &[], b"");
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.starts_with("host-local (Rust) v"),
        "{:?}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "CNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
        ),
        "{:?}",
        out.stderr
    );
}

#[test]
fn gc_1_1_0_removes_stale_attachments() {
    let t = setup();
    let vnet = net_at("1.1.0", t.path());
    let net = t.path().join("data/vnet");
    for id in ["keep", "stale1", "stale2"] {
        assert_eq!(vnet.add(id, "eth0").code, 0);
    }
    assert_eq!(reservations(&net).len(), 6);
    std::fs::write(net.join("10.1.0.50"), "stale-legacy").unwrap();
    assert_silent_success(&vnet.gc(&[("keep", "eth0")]));
    let left: Vec<String> = reservations(&net).into_keys().collect();
    assert_eq!(
        left,
        vec!["10.1.0.2".to_string(), "2001:db8:1::2".to_string()]
    );
    assert!(net.join("lock").exists() && net.join("last_reserved_ip.0").exists());
    // Without the key nothing is removed.
    assert_silent_success(&vnet.gc_with(json!({})));
    assert_eq!(reservations(&net).len(), 2);
}

#[test]
fn status_1_1_0() {
    let t = setup();
    let snet = our_net(
        "snet",
        &t.path().join("data"),
        json!({"subnet": "10.5.0.0/30"}),
    );
    assert_silent_success(&snet.status());
    assert_eq!(snet.add("c1", "eth0").code, 0);
    assert_error(&snet.status(), "1.1.0", 50);
    // Purely informational: DEL and ADD keep working.
    assert_silent_success(&snet.del("c1", "eth0"));
    assert_silent_success(&snet.status());
}

#[test]
fn gc_status_refused_below_1_1_0() {
    for v in &ALL[..6] {
        let t = setup();
        let vnet = net_at(v, t.path());
        assert_eq!(vnet.add("c1", "eth0").code, 0);
        assert_error(&vnet.gc(&[]), v, 1);
        assert_error(&vnet.status(), v, 1);
        assert_eq!(
            reservations(&t.path().join("data/vnet")).len(),
            2,
            "{v}: GC removed something"
        );
    }
}

#[test]
fn error_objects_every_version() {
    for v in ALL {
        let t = setup();
        let small = our_net(
            "e",
            &t.path().join("data"),
            json!({"subnet": "10.5.0.0/30"}),
        )
        .with_version(v);
        // 7: invalid config.
        let bad = small.with_ipam(json!({"subnet": "10.5.0.1/30"}));
        assert_error(&bad.add("c1", "eth0"), v, 7);
        // 4: bad CNI_ARGS.
        assert_error(&small.add_args("c1", "eth0", "NOPE=1"), v, 4);
        // 4: missing variable.
        let env: Vec<_> = cni_env("ADD", "c1", "eth0")
            .into_iter()
            .filter(|(k, _)| *k != "CNI_IFNAME")
            .collect();
        let out = small.run(&env);
        assert_eq!(out.err_code(), Some(4), "{out:?}");
        // 101: requested address unavailable (the gateway).
        assert_error(&small.add_args("c1", "eth0", "IP=10.5.0.1"), v, 101);
        // 100: exhausted.
        assert_eq!(small.add("c1", "eth0").code, 0);
        assert_error(&small.add("c2", "eth0"), v, 100);
        // 6: undecodable stdin.
        let out = run_plugin(&our_bin(), &cni_env("ADD", "c1", "eth0"), b"{nope");
        assert_eq!(out.code, 1);
        assert_eq!(out.err_code(), Some(6), "{out:?}");
    }
    // 1: unknown version.
    let t = setup();
    let out = net_at("9.9.9", t.path()).add("c1", "eth0");
    assert_eq!(out.err_code(), Some(1), "{out:?}");
}
