//! Range reads stay under the client's 4 MiB message limit whatever the
//! values' sizes: a pool holding 12,000 IPv6 reservations of other nodes
//! with 253-character node names (about 5 MB of keys and values), four
//! 1.4 MB values and one of 4.5 MB under the network's address keys. GC
//! and listing still work; the big unparseable values and the one too
//! large to read are damaged reservations, nothing fails.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use host_local::store::etcd::keys::{Keys, Record};
use host_local::store::etcd::EtcdStore;
use host_local::store::{Owner, Session};
use serde_json::json;

use crate::common::*;
use crate::etcd::{etcd_config, etcd_or_skip, Net, PREFIX};
use test_support::etcd::Cluster;

const OTHERS: u32 = 12_000;
const NETWORK: &str = "pages";

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 45, 0, last))
}

/// A node name of 253 characters, one of ten.
fn long_node(k: u32) -> String {
    format!("{}{:03}", "n".repeat(250), k % 10)
}

/// What other nodes and accidents left in etcd: reservations with long
/// node names (both keys, as the store writes them), four 1.4 MB values
/// and one 4.5 MB value where address keys belong.
fn seed(c: &Cluster) {
    let keys = Keys::new(PREFIX, NETWORK);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = etcd_client::Client::connect(c.endpoints(), None)
            .await
            .unwrap();
        let mut kv = client.kv_client();
        let base = u128::from("fd45::".parse::<Ipv6Addr>().unwrap());
        let mut ops = Vec::new();
        for k in 0..OTHERS {
            let ip = IpAddr::V6(Ipv6Addr::from(base + 1 + u128::from(k)));
            let id = format!("{k:064x}");
            let value = Record::new(&id, "eth0", &long_node(k)).encode();
            ops.push(etcd_client::TxnOp::put(keys.ip(ip), value.clone(), None));
            ops.push(etcd_client::TxnOp::put(
                keys.index(&id, "eth0", ip),
                value,
                None,
            ));
            if ops.len() == 100 || k + 1 == OTHERS {
                let txn = etcd_client::Txn::new().and_then(std::mem::take(&mut ops));
                kv.txn(txn).await.unwrap();
            }
        }
        for last in 200..204 {
            kv.put(keys.ip(v4(last)), vec![b'z'; 1_400_000], None)
                .await
                .unwrap();
        }
        kv.put(keys.ip(v4(204)), vec![b'Z'; 4_500_000], None)
            .await
            .unwrap();
    });
}

#[test]
fn large_values_and_long_node_names_are_read_in_pages() {
    if !etcd_or_skip("etcd large values") {
        return;
    }
    // Requests up to 6 MiB, so one value can exceed what a client receives.
    let c = Cluster::start_args(1, &["--max-request-bytes", "6291456"]);
    seed(&c);
    let net = Net::new(
        &c,
        NETWORK,
        json!({"ranges": [[{"subnet": "10.45.0.0/24"}], [{"subnet": "fd45::/112"}]]}),
    );
    let mine: Vec<Vec<String>> = ["a1", "a2", "a3"].iter().map(|id| net.add_ok(id)).collect();
    for ips in &mine {
        assert_eq!(ips.len(), 2, "{ips:?}");
    }
    assert_eq!(net.status().code, 0);

    // GC reads every reservation (pages of a few thousand keys, the big
    // values one at a time, the oversized one keys-only) and removes only
    // this node's unlisted ones.
    let g = net.gc(&["a1"]);
    assert_eq!(g.code, 0, "{g:?}");
    let chk = net
        .plugin()
        .with_top(json!({}))
        .run(&cni_env("CHECK", "a1", "eth0"));
    assert_eq!(chk.code, 0, "{chk:?}");
    for id in ["a2", "a3"] {
        let chk = net
            .plugin()
            .with_top(json!({}))
            .run(&cni_env("CHECK", id, "eth0"));
        assert_eq!(chk.err_code(), Some(103), "{id} was collected: {chk:?}");
    }

    // The listing holds every key once: the others', the damaged ones, a1's.
    let mut st = EtcdStore::new(etcd_config(&c, "node-a"), NETWORK);
    let mut s = st.etcd_session().unwrap();
    let all = s.list().unwrap();
    assert_eq!(all.len(), OTHERS as usize + 5 + 2);
    let damaged: Vec<(IpAddr, String)> = all
        .iter()
        .filter(|e| e.owner == Owner::Damaged)
        .map(|e| (e.ip, e.damage.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        damaged.iter().map(|d| d.0).collect::<Vec<_>>(),
        (200..205).map(v4).collect::<Vec<_>>()
    );
    assert!(damaged[0].1.contains("unreadable"), "{damaged:?}");
    assert!(damaged[4].1.contains("too large"), "{damaged:?}");
    let long = all
        .iter()
        .filter(|n| n.node.as_deref().is_some_and(|x| x.len() == 253))
        .count();
    assert_eq!(long, OTHERS as usize);
    // Damaged addresses stay reserved: never handed out.
    assert_eq!(
        s.owner_of(v4(204))
            .unwrap()
            .map(|e| e.owner == Owner::Damaged),
        Some(true)
    );
    assert_eq!(s.count().unwrap(), u64::from(OTHERS) + 5 + 2);
    drop(s);
    for last in [200, 204] {
        let mut env = cni_env("ADD", "b1", "eth0");
        let arg = format!("IP={}", v4(last));
        env.push(("CNI_ARGS", &arg));
        let o = net.plugin().with_top(json!({})).run(&env);
        assert_eq!(o.err_code(), Some(101), "{arg}: {o:?}");
    }
}
