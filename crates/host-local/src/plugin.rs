//! host-local as a CNI plugin: the protocol library calls these for each
//! command; they load the configuration, open the store and run the
//! allocator.

use cni_proto::{CniError, CniResult, Plugin, Request, SpecVersion};
use serde_json::Value;

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
        HostLocal { open_store }
    }

    fn config(req: &Request) -> Result<IpamConfig, Error> {
        let c = req.config;
        IpamConfig::load(
            c.name.as_str(),
            c.cni_version,
            c.ipam.as_ref(),
            c.args.as_ref(),
            c.runtime_config.as_ref(),
            &req.env.args,
        )
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
        let cfg = Self::config(req)?;
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
        let cfg = Self::config(req)?;
        let (id, ifname) = Self::attachment(req);
        let mut store = (self.open_store)(&cfg);
        let mut s = store.session().map_err(|e| Self::store_err(&cfg, e))?;
        alloc::del(&cfg, s.as_mut(), &id, &ifname)
    }

    fn do_check(&mut self, req: &Request) -> Result<(), Error> {
        let cfg = Self::config(req)?;
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
        let cfg = Self::config(req)?;
        let Some(valid) = valid_attachments(&req.config.raw)? else {
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
        let cfg = Self::config(req)?;
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

/// `cni.dev/valid-attachments` (or libcni's `cni.dev/attachments`): None when
/// neither key is present.
pub fn valid_attachments(raw: &Value) -> Result<Option<Vec<ValidAttachment>>, Error> {
    let (key, v) = match (
        raw.get("cni.dev/valid-attachments"),
        raw.get("cni.dev/attachments"),
    ) {
        (Some(v), _) if !v.is_null() => ("cni.dev/valid-attachments", v),
        (_, Some(v)) if !v.is_null() => ("cni.dev/attachments", v),
        _ => return Ok(None),
    };
    let list = v.as_array().ok_or_else(|| {
        Error::config(
            key,
            v.to_string(),
            "expected a list of {containerID, ifname}",
        )
    })?;
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let field = format!("{key}[{i}]");
        let get = |k: &str| -> Result<String, Error> {
            item.get(k)
                .and_then(|x| x.as_str())
                .map(str::to_string)
                .ok_or_else(|| {
                    Error::config(
                        format!("{field}.{k}"),
                        item.to_string(),
                        "missing or not a string",
                    )
                })
        };
        out.push(ValidAttachment {
            container_id: get("containerID")?,
            ifname: get("ifname")?,
        });
    }
    Ok(Some(out))
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
}
