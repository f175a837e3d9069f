//! What addresses and files are to a network when no reservation explains
//! them: an address nobody holds (free, the gateway, excluded, outside
//! every range), a file of the network directory that is no reservation,
//! lock or cursor (a stray). Pure: the reading is in `inspect`.

use std::collections::HashSet;
use std::net::IpAddr;

use serde::Serialize;

use crate::inspect::NetworkView;

/// A file in a network directory that is neither a reservation, the lock
/// nor a cursor: the plugins neither count nor reserve anything with it.
#[derive(Clone, Debug, Serialize)]
pub struct Stray {
    pub name: String,
    pub reason: String,
}

/// Why `name` (in a network directory) is stray; None: a reservation (a
/// canonical address), the lock or a cursor.
pub fn stray_reason(name: &str, is_dir: bool, names: &HashSet<String>) -> Option<String> {
    use host_local::store::disk::{parse_reservation_name, CURSOR_PREFIX, LOCK_FILE};
    if name == LOCK_FILE {
        return None;
    }
    if let Some(n) = name.strip_prefix(CURSOR_PREFIX) {
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    if parse_reservation_name(name).is_some() {
        // A reservation (whatever it is, a directory included: damaged).
        return None;
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        let canonical = ip.to_string();
        let beside = if names.contains(&canonical) {
            format!(", beside {canonical}")
        } else {
            String::new()
        };
        return Some(format!(
            "not the canonical name of {canonical}{beside}: the plugins reserve and look up \
             {canonical}, so this file reserves nothing"
        ));
    }
    if is_dir {
        return Some("a directory: not a reservation".into());
    }
    if name.starts_with(".tmp") || name.ends_with(".tmp") {
        return Some(
            "a temporary file, left by an interrupted write; not a reservation (safe to delete \
             while no plugin runs)"
                .into(),
        );
    }
    Some("not a reservation, lock or cursor file; the plugins ignore it".into())
}

/// What an address that no reservation holds is to a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressState {
    /// In a range: the plugin may hand it out.
    Free,
    /// The gateway of a range: never handed out.
    Gateway,
    /// Excluded from a range: never handed out.
    Excluded,
    /// In no configured range.
    OutsideRanges,
    /// Without a (usable) configuration the ranges are not known.
    Unknown,
}

impl AddressState {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressState::Free => "free",
            AddressState::Gateway => "gateway",
            AddressState::Excluded => "excluded",
            AddressState::OutsideRanges => "outside-ranges",
            AddressState::Unknown => "unknown",
        }
    }
}

/// Why no reservation of `view` holds `ip`: what the address is to the network.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub state: AddressState,
    pub detail: String,
}

/// Explains an address `view` holds no reservation for.
pub fn explain_unreserved(view: &NetworkView, ip: IpAddr) -> Explanation {
    let (state, detail) = explain_in(view, ip);
    Explanation { state, detail }
}

fn explain_in(view: &NetworkView, ip: IpAddr) -> (AddressState, String) {
    let name = &view.name;
    if view.config_error.is_some() {
        return (
            AddressState::Unknown,
            format!("not reserved; the configuration of network {name} is unusable, so its ranges are not known"),
        );
    }
    let Some(cfg) = &view.config else {
        return (
            AddressState::Unknown,
            format!(
                "not reserved; without --config it is not known whether network {name} hands it out"
            ),
        );
    };
    let sets = &cfg.ipam.ranges;
    for (i, s) in sets.iter().enumerate() {
        if let Some(rg) = s.0.iter().find(|rg| rg.gateway == ip) {
            return (
                AddressState::Gateway,
                format!("the gateway of range {rg} in range set {i}: never handed out"),
            );
        }
    }
    for (i, s) in sets.iter().enumerate() {
        let Some(rg) = s.range_for(ip) else { continue };
        if let Some((a, b)) = rg.excluded_interval(ip) {
            let (a, b) = (
                host_local::addr::from_u128(ip, a),
                host_local::addr::from_u128(ip, b),
            );
            let what = if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            };
            return (
                AddressState::Excluded,
                format!("excluded ({what}) from range {rg} in range set {i}: never handed out"),
            );
        }
        return (
            AddressState::Free,
            format!("free in range set {i} ({s}): the plugin may hand it out"),
        );
    }
    let note = if cfg.runtime_ranges {
        " (the plugin also takes ipRanges from the runtime)"
    } else {
        ""
    };
    (
        AddressState::OutsideRanges,
        format!("outside every configured range of network {name}{note}"),
    )
}
