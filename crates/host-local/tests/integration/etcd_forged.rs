//! CHECK and DEL believe the address record, not the index alone: a forged
//! (or stale) `attachments/<id>/<ifname>/...` key names no reservation
//! unless the address key exists and names that attachment too.

use serde_json::json;

use host_local::store::etcd::keys::{Keys, Record};

use crate::common::*;
use crate::etcd::{check_consistent, dump, etcd_or_skip, Net, PREFIX};
use test_support::etcd::Cluster;

#[test]
fn a_forged_index_key_reserves_nothing() {
    if !etcd_or_skip("etcd forged index") {
        return;
    }
    let c = Cluster::start(1);
    let net = Net::new(&c, "forged", json!({"subnet": "10.46.0.0/24"}));
    let keys = Keys::new(PREFIX, "forged");
    let victim = net.add_ok("victim");
    let victim_ip: std::net::IpAddr = victim[0].parse().unwrap();
    let forge = |id: &str, ip: std::net::IpAddr| {
        let value = String::from_utf8(Record::new(id, "eth0", "node-a").encode()).unwrap();
        let (ok, out) = c.etcdctl(&["put", &keys.index(id, "eth0", ip), &value]);
        assert!(ok, "{out}");
    };
    let check = |id: &str, ip: &str| {
        let prev = json!({"cniVersion": "1.1.0", "ips": [{"address": format!("{ip}/24")}]});
        net.plugin()
            .with_top(json!({"prevResult": prev}))
            .run(&cni_env("CHECK", id, "eth0"))
    };
    // An index key naming another container's address.
    forge("intruder", victim_ip);
    let o = check("intruder", &victim[0]);
    assert_eq!(
        o.err_code(),
        Some(103),
        "CHECK passed on a forged index key: {o:?}"
    );
    // An index key naming a free address (no address key at all).
    let free: std::net::IpAddr = "10.46.0.99".parse().unwrap();
    forge("ghost", free);
    let o = check("ghost", "10.46.0.99");
    assert_eq!(
        o.err_code(),
        Some(103),
        "CHECK passed without an address key: {o:?}"
    );
    // DEL of the intruder leaves the victim's reservation alone.
    let before = dump(&c, "forged");
    let d = net.del("intruder");
    assert_eq!(d.code, 0, "{d:?}");
    assert_eq!(
        dump(&c, "forged"),
        before,
        "DEL of a forged attachment changed etcd"
    );
    assert_eq!(check("victim", &victim[0]).code, 0);
    // ADD of the ghost is not refused as a duplicate: it holds nothing.
    let ghost = net.add_ok("ghost");
    assert_ne!(ghost, ["10.46.0.99"]);
    // The forged keys are the only inconsistency; removed, all is well.
    for (id, ip) in [("intruder", victim_ip), ("ghost", free)] {
        let (ok, out) = c.etcdctl(&["del", &keys.index(id, "eth0", ip)]);
        assert!(ok, "{out}");
    }
    let owners = check_consistent(&c, "forged");
    assert_eq!(owners.len(), 2);
    assert_eq!(owners[&victim[0]].0, "victim");
}
