//! Our binary over every spec version: exact ADD results, CHECK, DEL,
//! VERSION, GC and STATUS (1.1.0, and their refusal below), the about text,
//! and error objects.

use std::path::Path;

use serde_json::{json, Value};

use super::common::{cni_env, our_bin, reservations, run_plugin, Output};

const ALL: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

const RESOLV: &str = "# comment\n; another comment\nnameserver 10.9.9.9\nnameserver 2001:db8::53\n\
domain example.test\nsearch a.test b.test\noptions ndots:2 timeout:1\n";

fn dns() -> Value {
    json!({"nameservers": ["10.9.9.9", "2001:db8::53"], "domain": "example.test",
           "search": ["a.test", "b.test"], "options": ["ndots:2", "timeout:1"]})
}

/// Dual stack with routes and a resolv.conf.
fn conf(version: &str, dir: &Path) -> Value {
    json!({
        "cniVersion": version, "name": "vnet", "type": "bridge",
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "2001:db8:1::/64"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}, {"dst": "::/0"}],
            "resolvConf": dir.join("resolv.conf"),
            "dataDir": dir.join("data"),
        }
    })
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

fn run(cmd: &str, container: &str, conf: &Value) -> Output {
    run_plugin(
        &our_bin(),
        &cni_env(cmd, container, "eth0"),
        conf.to_string().as_bytes(),
    )
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
        let c = conf(v, t.path());
        let net = t.path().join("data/vnet");

        let add = run("ADD", "c1", &c);
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

        let mut checked = c.clone();
        checked["prevResult"] = add.json();
        let check = run("CHECK", "c1", &checked);
        if v < "0.4.0" {
            assert_error(&check, v, 1);
        } else {
            assert_silent_success(&check);
            // A prevResult with another address is a mismatch (104).
            let mut wrong = checked.clone();
            wrong["prevResult"]["ips"][0]["address"] = json!("10.1.0.77/24");
            assert_error(&run("CHECK", "c1", &wrong), v, 104);
            assert_error(&run("CHECK", "other", &checked), v, 103);
        }

        // A second ADD of the same attachment is a duplicate.
        assert_error(&run("ADD", "c1", &c), v, 102);

        assert_silent_success(&run("DEL", "c1", &c));
        assert!(
            reservations(&net).is_empty(),
            "{v}: DEL left {:?}",
            reservations(&net)
        );
        assert_silent_success(&run("DEL", "c1", &c));
        if v >= "0.4.0" {
            assert_error(&run("CHECK", "c1", &checked), v, 103);
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

fn gc_env() -> Vec<(&'static str, &'static str)> {
    vec![("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")]
}

#[test]
fn gc_1_1_0_removes_stale_attachments() {
    let t = setup();
    let mut c = conf("1.1.0", t.path());
    let net = t.path().join("data/vnet");
    for id in ["keep", "stale1", "stale2"] {
        assert_eq!(run("ADD", id, &c).code, 0);
    }
    assert_eq!(reservations(&net).len(), 6);
    std::fs::write(net.join("10.1.0.50"), "stale-legacy").unwrap();
    c["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    let out = run_plugin(&our_bin(), &gc_env(), c.to_string().as_bytes());
    assert_silent_success(&out);
    let left: Vec<String> = reservations(&net).into_keys().collect();
    assert_eq!(
        left,
        vec!["10.1.0.2".to_string(), "2001:db8:1::2".to_string()]
    );
    assert!(net.join("lock").exists() && net.join("last_reserved_ip.0").exists());
    // Without the key nothing is removed.
    c.as_object_mut()
        .unwrap()
        .remove("cni.dev/valid-attachments");
    assert_silent_success(&run_plugin(&our_bin(), &gc_env(), c.to_string().as_bytes()));
    assert_eq!(reservations(&net).len(), 2);
}

#[test]
fn status_1_1_0() {
    let t = setup();
    let c = json!({"cniVersion": "1.1.0", "name": "snet",
                   "ipam": {"type": "host-local", "subnet": "10.5.0.0/30", "dataDir": t.path().join("data")}});
    let status = || {
        run_plugin(
            &our_bin(),
            &[("CNI_COMMAND", "STATUS")],
            c.to_string().as_bytes(),
        )
    };
    assert_silent_success(&status());
    assert_eq!(run("ADD", "c1", &c).code, 0);
    assert_error(&status(), "1.1.0", 50);
    // Purely informational: DEL and ADD keep working.
    assert_silent_success(&run("DEL", "c1", &c));
    assert_silent_success(&status());
}

#[test]
fn gc_status_refused_below_1_1_0() {
    for v in &ALL[..6] {
        let t = setup();
        let mut c = conf(v, t.path());
        c["cni.dev/valid-attachments"] = json!([]);
        assert_eq!(run("ADD", "c1", &c).code, 0);
        assert_error(
            &run_plugin(&our_bin(), &gc_env(), c.to_string().as_bytes()),
            v,
            1,
        );
        assert_error(
            &run_plugin(
                &our_bin(),
                &[("CNI_COMMAND", "STATUS")],
                c.to_string().as_bytes(),
            ),
            v,
            1,
        );
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
        let dir = t.path().join("data");
        let small = json!({"cniVersion": v, "name": "e", "ipam": {"type": "host-local", "subnet": "10.5.0.0/30", "dataDir": dir}});
        // 7: invalid config.
        let bad = json!({"cniVersion": v, "name": "e", "ipam": {"type": "host-local", "subnet": "10.5.0.1/30", "dataDir": dir}});
        assert_error(&run("ADD", "c1", &bad), v, 7);
        // 4: bad CNI_ARGS.
        let mut env = cni_env("ADD", "c1", "eth0");
        env.push(("CNI_ARGS", "NOPE=1"));
        assert_error(
            &run_plugin(&our_bin(), &env, small.to_string().as_bytes()),
            v,
            4,
        );
        // 4: missing variable.
        let env: Vec<_> = cni_env("ADD", "c1", "eth0")
            .into_iter()
            .filter(|(k, _)| *k != "CNI_IFNAME")
            .collect();
        let out = run_plugin(&our_bin(), &env, small.to_string().as_bytes());
        assert_eq!(out.err_code(), Some(4), "{out:?}");
        // 101: requested address unavailable (the gateway).
        let mut env = cni_env("ADD", "c1", "eth0");
        env.push(("CNI_ARGS", "IP=10.5.0.1"));
        assert_error(
            &run_plugin(&our_bin(), &env, small.to_string().as_bytes()),
            v,
            101,
        );
        // 100: exhausted.
        assert_eq!(run("ADD", "c1", &small).code, 0);
        assert_error(&run("ADD", "c2", &small), v, 100);
        // 6: undecodable stdin.
        let out = run_plugin(&our_bin(), &cni_env("ADD", "c1", "eth0"), b"{nope");
        assert_eq!(out.code, 1);
        assert_eq!(out.err_code(), Some(6), "{out:?}");
    }
    // 1: unknown version.
    let t = setup();
    let out = run("ADD", "c1", &conf("9.9.9", t.path()));
    assert_eq!(out.err_code(), Some(1), "{out:?}");
}
