//! STATUS tells the truth about etcd: code 50 naming the alarm while etcd
//! has NOSPACE raised (its backend reached `--quota-backend-bytes`) or
//! CORRUPT, and while it has no leader; 0 again once an operator has
//! compacted, defragmented and disarmed. ADD meanwhile fails with code 11.

use std::time::Duration;

use host_local::store::etcd::{AlarmKind, EtcdStore};
use serde_json::json;

use crate::common::*;
use crate::etcd::{etcd_config, etcd_or_skip, Net};
use test_support::etcd::Cluster;

fn msg(o: &Output) -> String {
    o.json()["msg"].as_str().unwrap_or_default().to_string()
}

/// Runs `f` with an etcd client on a runtime of its own.
fn with_client<T>(c: &Cluster, f: impl AsyncFnOnce(etcd_client::Client) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = etcd_client::Client::connect(c.endpoints(), None)
            .await
            .unwrap();
        f(client).await
    })
}

/// Writes 1 MB values until etcd refuses for lack of space (at most 64).
fn fill(c: &Cluster) {
    let full = with_client(c, async |client| {
        let mut kv = client.kv_client();
        let big = vec![b'x'; 1_000_000];
        for i in 0..64 {
            if let Err(e) = kv.put(format!("/filler/{i}"), big.clone(), None).await {
                return Some(e.to_string());
            }
        }
        None
    });
    let e = full.expect("64 MB written under a 4 MiB quota");
    assert!(e.contains("database space exceeded"), "{e}");
}

fn alarms(c: &Cluster) -> Vec<AlarmKind> {
    let mut st = EtcdStore::new(etcd_config(c, "node-a"), "health");
    let mut s = st.etcd_session().unwrap();
    let listed: Vec<AlarmKind> = s.alarms().unwrap().into_iter().map(|a| a.kind).collect();
    let seen: Vec<AlarmKind> = s
        .health()
        .unwrap()
        .alarms
        .into_iter()
        .map(|a| a.kind)
        .collect();
    assert_eq!(listed, seen, "AlarmList and Status agree");
    listed
}

#[test]
fn status_is_50_while_etcd_has_an_alarm() {
    if !etcd_or_skip("etcd alarms") {
        return;
    }
    let c = Cluster::start_args(1, &["--quota-backend-bytes", "4194304"]);
    let net = Net::new(&c, "health", json!({"subnet": "10.43.0.0/24"}));
    net.add_ok("c1");
    assert_eq!(net.status().code, 0);
    assert!(alarms(&c).is_empty());

    fill(&c);
    assert_eq!(alarms(&c), [AlarmKind::NoSpace]);
    let st = net.status();
    assert_eq!(st.err_code(), Some(50), "{st:?}");
    assert!(msg(&st).contains("NOSPACE"), "{st:?}");
    assert!(msg(&st).contains("--quota-backend-bytes"), "{st:?}");
    let add = net.add("c2");
    assert_eq!(add.err_code(), Some(11), "{add:?}");
    assert!(msg(&add).contains("database space exceeded"), "{add:?}");
    // Reads still work: CHECK of what was there.
    let chk = net
        .plugin()
        .with_top(json!({}))
        .run(&cni_env("CHECK", "c1", "eth0"));
    assert_eq!(chk.code, 0, "{chk:?}");

    // The operator's way out: delete, compact, defragment, disarm.
    let (ok, out) = c.etcdctl(&["del", "/filler/", "--prefix"]);
    assert!(ok, "{out}");
    let rev = with_client(&c, async |client| {
        let mut kv = client.kv_client();
        kv.get("/", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision()
    });
    for args in [
        vec!["compact".to_string(), rev.to_string()],
        vec!["defrag".to_string()],
        vec!["alarm".to_string(), "disarm".to_string()],
    ] {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out) = c.etcdctl(&a);
        assert!(ok, "etcdctl {a:?}: {out}");
    }
    assert!(alarms(&c).is_empty());
    assert_eq!(net.status().code, 0);
    net.add_ok("c2");

    // CORRUPT, raised by hand as etcd raises it on a member whose data
    // disagrees: STATUS names it.
    with_client(&c, async |client| {
        let mut m = client.maintenance_client();
        let id = m.status().await.unwrap().header().unwrap().member_id();
        let mut opts = etcd_client::AlarmOptions::new();
        opts.with_member(id);
        m.alarm(
            etcd_client::AlarmAction::Activate,
            etcd_client::AlarmType::Corrupt,
            Some(opts),
        )
        .await
        .unwrap();
    });
    assert_eq!(alarms(&c), [AlarmKind::Corrupt]);
    let st = net.status();
    assert_eq!(st.err_code(), Some(50), "{st:?}");
    assert!(msg(&st).contains("CORRUPT"), "{st:?}");
}

#[test]
fn status_is_50_naming_the_missing_leader() {
    if !etcd_or_skip("etcd no leader") {
        return;
    }
    let mut c = Cluster::start(3);
    let mut net = Net::new(&c, "leaderless", json!({"subnet": "10.44.0.0/24"}));
    net.timeout = "1s".into();
    assert_eq!(net.status().code, 0);
    c.kill(1);
    c.kill(2);
    // The remaining member notices the lost quorum within its election
    // timeout (500 ms in these tests): until then it still names a leader
    // and reads time out (STATUS 50 all the same), then it answers that it
    // has none. Bounded: 20 tries.
    let mut last = None;
    for _ in 0..20 {
        let st = net.status();
        assert_ne!(st.code, 0, "STATUS 0 without quorum: {st:?}");
        assert_eq!(st.err_code(), Some(50), "{st:?}");
        if msg(&st).contains("no leader") {
            last = Some(st);
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let st = last.expect("STATUS never named the missing leader");
    assert!(msg(&st).contains(&c.endpoint(0)), "{st:?}");
    eprintln!("{}", msg(&st));
}
