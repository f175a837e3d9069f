//! host-local as a CNI plugin: the protocol library calls these for each
//! command; they load the configuration, open the store and run the
//! allocator.

use cni_proto::gojson::Doc;
use cni_proto::{CniError, CniResult, Plugin, Request, SpecVersion};

use crate::alloc::{self, ValidAttachment};
use crate::config::IpamConfig;
use crate::error::Error;
use crate::store::disk::DiskStore;
use crate::store::{Entry, Owner, Store};

/// Opens the store for a configuration (the disk store in production).
pub type StoreOpener = Box<dyn FnMut(&IpamConfig) -> Box<dyn Store>>;

/// The plugin, with the store it runs on passed in.
pub struct HostLocal {
    open_store: StoreOpener,
    /// Notes about the last configuration loaded, for stderr.
    notes: Vec<String>,
}

impl Default for HostLocal {
    fn default() -> Self {
        HostLocal::new(Box::new(|cfg: &IpamConfig| {
            Box::new(DiskStore::new(cfg.data_dir.clone(), &cfg.network)) as Box<dyn Store>
        }))
    }
}

/// Spec versions we speak: all of them.
pub const SUPPORTED: &[SpecVersion] = &SpecVersion::ALL;

impl HostLocal {
    pub fn new(open_store: StoreOpener) -> Self {
        HostLocal {
            open_store,
            notes: Vec::new(),
        }
    }

    fn config(&mut self, req: &Request) -> Result<IpamConfig, Error> {
        let c = req.config;
        let cfg = IpamConfig::from_doc(c.name.as_str(), c.cni_version, &c.doc, &req.env.args)?;
        self.notes = cfg.notes();
        Ok(cfg)
    }

    fn attachment(req: &Request) -> (String, String) {
        let id = req
            .env
            .container_id
            .as_ref()
            .map(|c| c.as_str().to_string())
            .unwrap_or_default();
        let ifname = req
            .env
            .ifname
            .as_ref()
            .map(|c| c.as_str().to_string())
            .unwrap_or_default();
        (id, ifname)
    }

    fn store_err(cfg: &IpamConfig, e: crate::error::StoreError) -> Error {
        Error::Store {
            network: cfg.network.clone(),
            source: e,
        }
    }

    fn do_add(&mut self, req: &Request) -> Result<CniResult, Error> {
        let cfg = self.config(req)?;
        let dns = match &cfg.resolv_conf {
            Some(p) => crate::resolv::load(p)?,
            None => Default::default(),
        };
        let (id, ifname) = Self::attachment(req);
        let mut store = (self.open_store)(&cfg);
        store.prepare(&id, &ifname, cfg.ranges.len());
        let mut result = {
            let mut s = store.session().map_err(|e| Self::store_err(&cfg, e))?;
            alloc::add(&cfg, s.as_mut(), &id, &ifname)?
        };
        if let Err(e) = store.sync() {
            // Not durable: take the reservations back (all or nothing).
            if let Ok(mut s) = store.session() {
                let owner = Owner::Attachment {
                    id: id.clone(),
                    ifname: ifname.clone(),
                };
                for ip in &result.ips {
                    let _ = s.release(&Entry {
                        ip: ip.address.addr(),
                        owner: owner.clone(),
                    });
                }
            }
            return Err(Self::store_err(&cfg, e));
        }
        result.dns = dns;
        Ok(result)
    }

    fn do_del(&mut self, req: &Request) -> Result<(), Error> {
        let cfg = self.config(req)?;
        let (id, ifname) = Self::attachment(req);
        let mut store = (self.open_store)(&cfg);
        let mut s = store.session().map_err(|e| Self::store_err(&cfg, e))?;
        alloc::del(&cfg, s.as_mut(), &id, &ifname)
    }

    fn do_check(&mut self, req: &Request) -> Result<(), Error> {
        let cfg = self.config(req)?;
        let prev = match req.config.prev_result.as_ref().filter(|v| !v.is_null()) {
            Some(v) => Some(
                CniResult::from_wire(v, cfg.version)
                    .map_err(|e| Error::config("prevResult", "", e.to_string()))?,
            ),
            None => None,
        };
        let (id, ifname) = Self::attachment(req);
        let mut store = (self.open_store)(&cfg);
        let mut s = store.session().map_err(|e| Self::store_err(&cfg, e))?;
        alloc::check(&cfg, s.as_mut(), &id, &ifname, prev.as_ref())
    }

    fn do_gc(&mut self, req: &Request) -> Result<(), Error> {
        let cfg = self.config(req)?;
        let Some(valid) = valid_attachments(&req.config.doc)? else {
            return Ok(());
        };
        let mut store = (self.open_store)(&cfg);
        let mut s = store.session().map_err(|e| Self::store_err(&cfg, e))?;
        let report = alloc::gc(&cfg, s.as_mut(), &valid)?;
        if report.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Gc {
                count: report.errors.len(),
                list: report.errors.join("; "),
            })
        }
    }

    fn do_status(&mut self, req: &Request) -> Result<(), Error> {
        let cfg = self.config(req)?;
        let mut store = (self.open_store)(&cfg);
        let mut s = store.session().map_err(|e| Error::NotAvailable {
            reason: format!("store of network {} unusable: {e}", cfg.network),
        })?;
        alloc::status(&cfg, s.as_mut()).map_err(|e| match e {
            Error::Store { source, network } => Error::NotAvailable {
                reason: format!("store of network {network} unusable: {source}"),
            },
            other => other,
        })
    }
}

/// `cni.dev/valid-attachments` (or libcni's `cni.dev/attachments`), decoded with Go's rules:
/// None when neither key is present.
pub fn valid_attachments(doc: &Doc) -> Result<Option<Vec<ValidAttachment>>, Error> {
    // Only 1.1.0 configs carry a GC list; routes do not matter here.
    let net = crate::config::decode_net(doc, false)?;
    let (key, list) = match (net.valid_attachments, net.attachments) {
        (Some(l), _) => ("cni.dev/valid-attachments", l),
        (None, Some(l)) => ("cni.dev/attachments", l),
        (None, None) => return Ok(None),
    };
    list.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let get = |k: &str, v: Option<String>| {
                v.ok_or_else(|| Error::config(format!("{key}[{i}].{k}"), "", "missing"))
            };
            Ok(ValidAttachment {
                container_id: get("containerID", a.container_id)?,
                ifname: get("ifname", a.ifname)?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()
        .map(Some)
}

impl Plugin for HostLocal {
    fn supported_versions(&self) -> &[SpecVersion] {
        SUPPORTED
    }

    fn about(&self) -> String {
        format!(
            "host-local (Rust) v{}: CNI host-local IPAM plugin",
            env!("CARGO_PKG_VERSION")
        )
    }

    fn add(&mut self, req: &Request) -> Result<CniResult, CniError> {
        self.do_add(req).map_err(CniError::from)
    }

    fn del(&mut self, req: &Request) -> Result<(), CniError> {
        self.do_del(req).map_err(CniError::from)
    }

    fn check(&mut self, req: &Request) -> Result<(), CniError> {
        self.do_check(req).map_err(CniError::from)
    }

    fn gc(&mut self, req: &Request) -> Result<(), CniError> {
        self.do_gc(req).map_err(CniError::from)
    }

    fn status(&mut self, req: &Request) -> Result<(), CniError> {
        self.do_status(req).map_err(CniError::from)
    }

    fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{RefCell, RefMut};
    use std::ffi::OsString;
    use std::net::IpAddr;
    use std::rc::Rc;

    use super::*;
    use crate::error::StoreError;
    use crate::store::memory::MemoryStore;
    use crate::store::{Pick, Session};

    /// A memory store shared with the test, whose `sync` can be made to fail.
    struct Shared {
        inner: Rc<RefCell<MemoryStore>>,
        fail_sync: bool,
    }

    struct SharedSession<'a>(RefMut<'a, MemoryStore>);

    impl Session for SharedSession<'_> {
        fn find(&mut self, id: &str, ifname: &str) -> Result<Vec<Entry>, StoreError> {
            self.0.session()?.find(id, ifname)
        }
        fn is_reserved(&mut self, ip: IpAddr) -> Result<bool, StoreError> {
            self.0.session()?.is_reserved(ip)
        }
        fn owner_of(&mut self, ip: IpAddr) -> Result<Option<Owner>, StoreError> {
            self.0.session()?.owner_of(ip)
        }
        fn cursor(&mut self, set_index: usize) -> Result<Option<IpAddr>, StoreError> {
            self.0.session()?.cursor(set_index)
        }
        fn reserve(&mut self, id: &str, ifname: &str, picks: &[Pick]) -> Result<(), StoreError> {
            self.0.session()?.reserve(id, ifname, picks)
        }
        fn release(&mut self, entry: &Entry) -> Result<bool, StoreError> {
            self.0.session()?.release(entry)
        }
        fn count(&mut self) -> Result<u64, StoreError> {
            self.0.session()?.count()
        }
        fn list(&mut self) -> Result<Vec<Entry>, StoreError> {
            self.0.session()?.list()
        }
    }

    impl Store for Shared {
        fn session(&mut self) -> Result<Box<dyn Session + '_>, StoreError> {
            Ok(Box::new(SharedSession(self.inner.borrow_mut())))
        }
        fn sync(&mut self) -> Result<(), StoreError> {
            if self.fail_sync {
                Err(StoreError::io(
                    "fsync",
                    "/data/net",
                    std::io::Error::from_raw_os_error(libc::EIO),
                ))
            } else {
                Ok(())
            }
        }
    }

    fn add(fail_sync: bool) -> (i32, serde_json::Value, MemoryStore) {
        let inner = Rc::new(RefCell::new(MemoryStore::new()));
        let handle = inner.clone();
        let mut plugin = HostLocal::new(Box::new(move |_: &IpamConfig| {
            Box::new(Shared {
                inner: handle.clone(),
                fail_sync,
            }) as Box<dyn Store>
        }));
        let env = |k: &str| -> Option<OsString> {
            let v = match k {
                "CNI_COMMAND" => "ADD",
                "CNI_CONTAINERID" => "c1",
                "CNI_NETNS" => "/var/run/netns/c1",
                "CNI_IFNAME" => "eth0",
                "CNI_PATH" => "/opt/cni/bin",
                _ => return None,
            };
            Some(v.into())
        };
        let conf = br#"{"cniVersion":"1.0.0","name":"net","ipam":{"type":"host-local",
            "ranges":[[{"subnet":"10.1.0.0/24"}],[{"subnet":"fd00::/64"}]],"dataDir":"/data"}}"#;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let o = cni_proto::run(&mut plugin, &env, &mut &conf[..], &mut out, &mut err);
        let json = serde_json::from_slice(&out).unwrap();
        drop(plugin);
        let store = Rc::try_unwrap(inner).ok().unwrap().into_inner();
        (o.exit_code, json, store)
    }

    #[test]
    fn valid_attachments_decode_with_go_rules() {
        let doc = Doc::parse(
            br#"{"CNI.DEV/VALID-ATTACHMENTS": [{"ContainerId": "c1", "IFNAME": "eth0"}],
                 "cni.dev/valid-attachments": [{"containerID": "c2", "ifname": "eth1", "x": 1}]}"#,
        )
        .unwrap();
        // The last key naming the field wins.
        let v = valid_attachments(&doc).unwrap().unwrap();
        assert_eq!(
            (v.len(), v[0].container_id.as_str(), v[0].ifname.as_str()),
            (1, "c2", "eth1")
        );
        let doc = Doc::parse(br#"{"Cni.Dev/Valid-Attachments": [{"ContainerId": "c1"}]}"#).unwrap();
        let e = valid_attachments(&doc).unwrap_err().to_string();
        assert!(e.contains("cni.dev/valid-attachments[0].ifname"), "{e}");
        assert!(valid_attachments(&Doc::parse(b"{}").unwrap())
            .unwrap()
            .is_none());
    }

    #[test]
    fn add_is_durable_before_it_reports() {
        let (code, json, store) = add(false);
        assert_eq!(code, 0, "{json}");
        assert_eq!(json["ips"].as_array().unwrap().len(), 2);
        assert_eq!(store.reservations.len(), 2);
    }

    #[test]
    fn a_failed_sync_takes_the_reservations_back() {
        let (code, json, store) = add(true);
        assert_eq!(code, 1);
        assert_eq!(json["code"], 5, "{json}");
        assert!(
            json["msg"].as_str().unwrap().contains("/data/net"),
            "{json}"
        );
        assert!(store.reservations.is_empty(), "{:?}", store.reservations);
    }
}
