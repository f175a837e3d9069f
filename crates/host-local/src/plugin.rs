//! host-local as a CNI plugin: the protocol library calls these for each
//! command; they load the configuration, open the store and run the
//! allocator.

use cni_proto::gojson::Doc;
use cni_proto::{CniError, CniResult, Plugin, Request, SpecVersion};

use crate::alloc::{self, ValidAttachment};
use crate::config::{IpamConfig, StoreConfig};
use crate::error::Error;
use crate::store::{self, Attachment, Store};

/// Opens the store a configuration names for a network ([`store::open`] in production).
pub type StoreOpener = Box<dyn FnMut(&StoreConfig, &str) -> Result<Box<dyn Store>, Error>>;

/// The plugin, with the store it runs on passed in.
pub struct HostLocal {
    open_store: StoreOpener,
    /// Notes about the last configuration loaded, for stderr.
    notes: Vec<String>,
    /// Set when the opener answered [`Error::HandOver`]: the executable that
    /// serves this configuration's store.
    handed_over: Option<&'static str>,
}

impl Default for HostLocal {
    fn default() -> Self {
        HostLocal::new(Box::new(store::open))
    }
}

/// Spec versions we speak: all of them.
pub const SUPPORTED: &[SpecVersion] = &SpecVersion::ALL;

impl HostLocal {
    pub fn new(open_store: StoreOpener) -> Self {
        HostLocal {
            open_store,
            notes: Vec::new(),
            handed_over: None,
        }
    }

    /// The executable the last call's store belongs to, when the opener
    /// handed it over instead of serving it ([`Error::HandOver`]).
    pub fn handed_over(&self) -> Option<&'static str> {
        self.handed_over
    }

    fn config(&mut self, req: &Request) -> Result<IpamConfig, Error> {
        let c = req.config;
        let cfg = IpamConfig::from_doc(c.name.as_str(), c.cni_version, &c.doc, &req.env.args)?;
        self.notes = cfg.notes();
        Ok(cfg)
    }

    /// The validated attachment of ADD, DEL and CHECK (cni-proto refuses
    /// these commands without both variables).
    fn attachment(req: &Request) -> Result<Attachment, Error> {
        let missing = |key: &str| Error::Args {
            key: key.into(),
            value: String::new(),
            reason: "missing".into(),
        };
        let id = req.env.container_id.clone();
        let ifname = req.env.ifname.clone();
        Ok(Attachment::new(
            id.ok_or_else(|| missing("CNI_CONTAINERID"))?,
            ifname.ok_or_else(|| missing("CNI_IFNAME"))?,
        ))
    }

    /// Opens the configuration's store and runs `op` on it; the one place a
    /// store error gets its network's name.
    fn on_store<T>(
        &mut self,
        cfg: &IpamConfig,
        op: impl FnOnce(&mut dyn Store) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut store = match (self.open_store)(&cfg.store, &cfg.network) {
            Ok(s) => s,
            Err(e) => {
                if let Error::HandOver { exe, .. } = e {
                    self.handed_over = Some(exe);
                }
                return Err(e);
            }
        };
        op(store.as_mut()).map_err(|e| e.in_network(&cfg.network))
    }

    fn do_add(&mut self, req: &Request) -> Result<CniResult, Error> {
        let cfg = self.config(req)?;
        let dns = match &cfg.resolv_conf {
            Some(p) => crate::resolv::load(p)?,
            None => Default::default(),
        };
        let att = Self::attachment(req)?;
        let mut result = self.on_store(&cfg, |st| alloc::add(&cfg, st, &att))?;
        result.dns = dns;
        Ok(result)
    }

    fn do_del(&mut self, req: &Request) -> Result<(), Error> {
        let cfg = self.config(req)?;
        let att = Self::attachment(req)?;
        self.on_store(&cfg, |st| alloc::del(&cfg, st, &att))
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
        let att = Self::attachment(req)?;
        self.on_store(&cfg, |st| alloc::check(&cfg, st, &att, prev.as_ref()))
    }

    fn do_gc(&mut self, req: &Request) -> Result<(), Error> {
        let cfg = self.config(req)?;
        let Some(valid) = valid_attachments(&req.config.doc)? else {
            return Ok(());
        };
        self.on_store(&cfg, |st| alloc::gc(&cfg, st, &valid).map(drop))
    }

    fn do_status(&mut self, req: &Request) -> Result<(), Error> {
        let cfg = self.config(req)?;
        self.on_store(&cfg, |st| alloc::status(&cfg, st))
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
pub(crate) mod tests {
    use std::cell::RefCell;
    use std::ffi::OsString;
    use std::rc::Rc;

    use super::*;
    use crate::error::StoreError;
    use crate::store::memory::MemoryStore;
    use crate::store::Session;

    /// A memory store shared with the test (the plugin drops its store after
    /// each command): a copy per command, written back when dropped.
    struct Shared {
        inner: MemoryStore,
        shared: Rc<RefCell<MemoryStore>>,
    }

    impl Store for Shared {
        fn session(&mut self) -> Result<Box<dyn Session + '_>, StoreError> {
            self.inner.session()
        }

        fn location(&self) -> String {
            self.inner.location()
        }
    }

    impl Drop for Shared {
        fn drop(&mut self) {
            *self.shared.borrow_mut() = std::mem::take(&mut self.inner);
        }
    }

    fn add(store: MemoryStore, conf: &[u8]) -> (i32, serde_json::Value, MemoryStore) {
        let inner = Rc::new(RefCell::new(store));
        let handle = inner.clone();
        let mut plugin = HostLocal::new(Box::new(move |_: &StoreConfig, _: &str| {
            Ok(Box::new(Shared {
                inner: handle.borrow().clone(),
                shared: handle.clone(),
            }) as Box<dyn Store>)
        }));
        let (code, json) = run_add(&mut plugin, conf);
        drop(plugin);
        let store = Rc::try_unwrap(inner).ok().unwrap().into_inner();
        (code, json, store)
    }

    /// The environment of `cmd` for container c1 on eth0 (also for `delegate`'s tests).
    pub(crate) fn cni_env(cmd: &'static str) -> impl Fn(&str) -> Option<OsString> {
        move |k| {
            let v = match k {
                "CNI_COMMAND" => cmd,
                "CNI_CONTAINERID" => "c1",
                "CNI_NETNS" => "/var/run/netns/c1",
                "CNI_IFNAME" => "eth0",
                "CNI_PATH" => "/opt/cni/bin",
                _ => return None,
            };
            Some(v.into())
        }
    }

    /// ADD of `conf` for container c1 on eth0: the exit code and the JSON printed.
    fn run_add(plugin: &mut HostLocal, conf: &[u8]) -> (i32, serde_json::Value) {
        let env = cni_env("ADD");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let o = cni_proto::run(plugin, &env, &mut &conf[..], &mut out, &mut err);
        (o.exit_code, serde_json::from_slice(&out).unwrap())
    }

    const CONF: &[u8] = br#"{"cniVersion":"1.0.0","name":"net","ipam":{"type":"host-local",
        "ranges":[[{"subnet":"10.1.0.0/24"}],[{"subnet":"fd00::/64"}]],"dataDir":"/data"}}"#;

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
        let (code, json, store) = add(MemoryStore::new(), CONF);
        assert_eq!(code, 0, "{json}");
        assert_eq!(json["ips"].as_array().unwrap().len(), 2);
        assert_eq!(store.reservations.len(), 2);
    }

    #[test]
    fn a_failed_durability_finish_takes_the_reservations_back() {
        let mut store = MemoryStore::new();
        store.fail_finish = true;
        let (code, json, store) = add(store, CONF);
        assert_eq!(code, 1);
        assert_eq!(json["code"], 5, "{json}");
        let msg = json["msg"].as_str().unwrap();
        assert!(msg.contains("injected failure: durability"), "{json}");
        assert!(msg.contains("taken back"), "{json}");
        assert!(store.reservations.is_empty(), "{:?}", store.reservations);
    }

    #[test]
    fn the_store_object_chooses_the_backend() {
        let mut plugin = HostLocal::default();
        let conf = br#"{"cniVersion":"1.0.0","name":"net","ipam":{"type":"host-local",
            "subnet":"10.1.0.0/24","dataDir":"/nonexistent/arch","store":{"type":"zookeeper"}}}"#;
        let (code, json) = run_add(&mut plugin, conf);
        assert_eq!(code, 1);
        assert_eq!(json["code"], 7, "{json}");
        assert!(
            json["msg"].as_str().unwrap().contains("ipam.store.type"),
            "{json}"
        );
    }
}
