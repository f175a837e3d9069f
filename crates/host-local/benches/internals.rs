//! Criterion benchmarks of the allocator and store internals (the whole-process
//! comparison with the reference is `cargo run --release -p ipam-bench`).
//!
//! `cargo bench -p host-local --bench internals`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use cni_proto::{CniArgs, SpecVersion};
use criterion::{criterion_group, criterion_main, Criterion};
use host_local::alloc::Candidates;
use host_local::config::IpamConfig;
use host_local::store::disk::DiskStore;
use host_local::store::{Attachment, Pick, Store};

fn config() -> IpamConfig {
    let ipam = serde_json::json!({"type": "host-local", "subnet": "10.128.0.0/16"});
    IpamConfig::load(
        "bench",
        SpecVersion::V1_0_0,
        Some(&ipam),
        None,
        None,
        &CniArgs::parse("").unwrap(),
    )
    .unwrap()
}

fn addr(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 2)) + i))
}

fn bench_parsing(c: &mut Criterion) {
    let conf = br#"{"cniVersion":"1.0.0","name":"bench","type":"bridge","ipam":{"type":"host-local","ranges":[[{"subnet":"10.128.0.0/16"}],[{"subnet":"fd00::/64"}]],"routes":[{"dst":"0.0.0.0/0"}]}}"#;
    c.bench_function("netconf parse + ipam load (dual stack)", |b| {
        b.iter(|| {
            let n = cni_proto::NetConf::parse(black_box(conf), &SpecVersion::ALL).unwrap();
            IpamConfig::from_doc(
                n.name.as_str(),
                n.cni_version,
                &n.doc,
                &CniArgs::parse("").unwrap(),
            )
            .unwrap()
        })
    });
    c.bench_function("reservation file parse", |b| {
        b.iter(|| {
            host_local::store::disk::parse_owner(black_box(
                b"3f2a9c0e5d7b41a88c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c\r\neth0",
            ))
        })
    });
}

fn bench_candidates(c: &mut Criterion) {
    let cfg = config();
    let set = &cfg.ranges[0];
    c.bench_function("candidates: first after a cursor in a /16", |b| {
        b.iter(|| Candidates::new(set, Some(black_box(addr(30_000)))).next())
    });
    c.bench_function("candidates: walk a whole /16", |b| {
        b.iter(|| Candidates::new(set, None).count())
    });
}

fn bench_store(c: &mut Criterion) {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let mut store = DiskStore::new(dir.path(), "bench");
    {
        let mut s = store.session().unwrap();
        for i in 0..10_000u32 {
            let att = Attachment::parse(&format!("c{i}"), "eth0").unwrap();
            let pick = Pick {
                ip: addr(i),
                set_index: 0,
            };
            s.commit(&att, &[pick]).unwrap().finish().unwrap();
        }
    }
    let c5000 = Attachment::parse("c5000", "eth0").unwrap();
    c.bench_function(
        "disk store, 10,000 reservations: session + find (index)",
        |b| {
            b.iter(|| {
                let mut s = store.session().unwrap();
                s.find(black_box(&c5000)).unwrap()
            })
        },
    );
    let mut scan = DiskStore::new(dir.path(), "bench").without_index();
    let mut g = c.benchmark_group("slow");
    g.sample_size(10);
    g.bench_function(
        "disk store, 10,000 reservations: session + find (full scan, as the reference)",
        |b| {
            b.iter(|| {
                let mut s = scan.session().unwrap();
                s.find(black_box(&c5000)).unwrap()
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench_parsing, bench_candidates, bench_store);
criterion_main!(benches);
