//! etcd's own authentication: `"auth": {"username", "passwordFile"}` in the
//! store object, a user whose role may read and write the network's prefix
//! only. Every refused credential or permission, whatever the command, is
//! one code (7, the configuration is wrong) with a message naming
//! `ipam.store.auth` or `ipam.store.tls` and the prefix; so is a client
//! certificate missing where etcd requires one, every time.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::common::*;
use crate::etcd::{check_consistent, etcd_or_skip, Net, PREFIX};
use crate::etcd_tls::Pki;
use test_support::etcd::Cluster;

const DENIED: u64 = 7;

fn msg(o: &Output) -> String {
    o.json()["msg"].as_str().unwrap_or_default().to_string()
}

/// A password file with `mode`.
fn password_file(dir: &Path, name: &str, password: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

/// Runs `cmd` on `net` with `auth` (None: no auth key) in its store object.
fn run(net: &Net, cmd: &str, id: &str, auth: Option<Value>) -> Output {
    let mut store = net.store();
    if let Some(a) = auth {
        store["auth"] = a;
    }
    let mut ipam = net.ipam.clone();
    ipam["store"] = store;
    let (env, top) = match cmd {
        "GC" => (
            vec![("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")],
            json!({"cni.dev/valid-attachments": []}),
        ),
        "STATUS" => (vec![("CNI_COMMAND", "STATUS")], json!({})),
        _ => (cni_env(cmd, id, "eth0"), json!({})),
    };
    let conf = net_conf("1.1.0", &net.name, net.data.path(), ipam, top);
    run_plugin(&our_bin(), &env, &conf)
}

fn auth(user: &str, file: &Path) -> Option<Value> {
    Some(json!({"username": user, "passwordFile": file}))
}

#[test]
fn username_and_password_with_a_role_limited_to_the_prefix() {
    if !etcd_or_skip("etcd auth") {
        return;
    }
    let mut c = Cluster::start(1);
    let net = Net::new(&c, "authnet", json!({"subnet": "10.47.0.0/24"}));
    let prefix = format!("{PREFIX}/authnet/");
    c.add_user("cni", "cni-secret", Some(&prefix));
    c.add_user("stranger", "stranger-secret", Some("/elsewhere/"));
    c.enable_auth("root-secret");
    let dir = tempfile::tempdir().unwrap();
    let good = password_file(dir.path(), "cni", "cni-secret", 0o600);
    let wrong = password_file(dir.path(), "wrong", "not-the-password", 0o600);
    let stranger = password_file(dir.path(), "stranger", "stranger-secret", 0o400);
    let open = password_file(dir.path(), "open", "cni-secret", 0o644);

    // The user limited to the prefix: every command works.
    let cni = auth("cni", &good);
    for (cmd, id) in [("ADD", "c1"), ("CHECK", "c1"), ("ADD", "c2"), ("DEL", "c2")] {
        let o = run(&net, cmd, id, cni.clone());
        assert_eq!(o.code, 0, "{cmd} {id}: {o:?}");
    }
    assert_eq!(run(&net, "STATUS", "", cni.clone()).code, 0);
    assert_eq!(run(&net, "GC", "", cni.clone()).code, 0);
    assert!(
        check_consistent(&c, "authnet").is_empty(),
        "GC with nothing valid"
    );
    for id in ["c1", "c3"] {
        assert_eq!(run(&net, "ADD", id, cni.clone()).code, 0);
    }

    // Each mistake: one code for every command, the setting and prefix named.
    let refused = |what: &str, a: Option<Value>, words: &[&str]| {
        for (cmd, id) in [("ADD", "c4"), ("CHECK", "c3"), ("DEL", "c3"), ("GC", "")] {
            let o = run(&net, cmd, id, a.clone());
            assert_eq!(o.err_code(), Some(DENIED), "{what}: {cmd}: {o:?}");
            let m = msg(&o);
            for w in words {
                assert!(m.contains(w), "{what}: {cmd}: no {w:?} in {m}");
            }
        }
        eprintln!("{what}: {}", msg(&run(&net, "ADD", "c4", a.clone())));
        let st = run(&net, "STATUS", "", a);
        assert_eq!(st.err_code(), Some(50), "{what}: STATUS: {st:?}");
        assert!(msg(&st).contains(words[0]), "{what}: STATUS: {st:?}");
    };
    refused(
        "wrong password",
        auth("cni", &wrong),
        &[
            "ipam.store.auth",
            "authentication failed",
            &prefix,
            &wrong.display().to_string(),
        ],
    );
    refused(
        "no permission on the prefix",
        auth("stranger", &stranger),
        &[
            "ipam.store.auth",
            "permission denied",
            &prefix,
            "grant-permission",
        ],
    );
    refused(
        "no credentials",
        None,
        &["ipam.store.auth", "user name is empty", &prefix],
    );
    refused(
        "a password file others may read",
        auth("cni", &open),
        &["ipam.store.auth.passwordFile", "mode 0644"],
    );
    // A missing password file is an I/O error naming it, as a TLS file's.
    let missing = dir.path().join("missing");
    let o = run(&net, "ADD", "c4", auth("cni", &missing));
    assert_eq!(o.err_code(), Some(5), "{o:?}");
    assert!(msg(&o).contains(&missing.display().to_string()), "{o:?}");

    // Nothing was changed by the refused calls: c1 and c3 as they were.
    let owners = check_consistent(&c, "authnet");
    let ids: Vec<&str> = owners.values().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["c1", "c3"]);
}

#[test]
fn credentials_for_an_etcd_without_authentication_are_not_needed() {
    if !etcd_or_skip("etcd auth disabled") {
        return;
    }
    let c = Cluster::start(1);
    let net = Net::new(&c, "noauth", json!({"subnet": "10.48.0.0/24"}));
    let dir = tempfile::tempdir().unwrap();
    let pw = password_file(dir.path(), "pw", "whatever", 0o600);
    // Configured before etcd enables authentication (a rolling change).
    let o = run(&net, "ADD", "c1", auth("cni", &pw));
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(check_consistent(&c, "noauth").len(), 1);
}

#[test]
fn a_missing_client_certificate_is_one_code_every_time() {
    if !etcd_or_skip("etcd client-cert-auth") {
        return;
    }
    let pki = Pki::new();
    let c = Cluster::start_tls(3, pki.server.clone());
    let mut net = Net::new(&c, "certnet", json!({"subnet": "10.49.0.0/24"}));
    let ca = pki.server.ca.to_string_lossy().into_owned();
    net.tls = Some(json!({"ca": ca}));
    net.timeout = "2s".into();
    let prefix = format!("{PREFIX}/certnet/");
    for i in 0..20 {
        let o = net.add(&format!("c{i}"));
        assert_eq!(o.err_code(), Some(DENIED), "run {i}: {o:?}");
        let m = msg(&o);
        if i == 0 {
            eprintln!("{m}");
        }
        for w in ["ipam.store.tls", "no client certificate", &prefix] {
            assert!(m.contains(w), "run {i}: no {w:?} in {m}");
        }
    }
    assert!(check_consistent(&c, "certnet").is_empty());
}
