//! Using a list of live attachments (`--valid`) against a network, shared
//! by `leaks`, `gc` (and what builds on them): the guards against a wrong
//! list, and what `gc` keeps on purpose although it is not listed (a
//! container may have started after the list was made).

use std::time::Duration;

use anyhow::{bail, Result};
use host_local::store::Owner;

use crate::attach::ValidSet;
use crate::duration;
use crate::inspect::{NetworkView, Reservation};
use crate::render;

/// Refuses a list that is surely wrong for `view` unless `force`: a GC
/// configuration naming another network, or a list that keeps none of the
/// network's named reservations (another runtime's IDs, truncated or
/// differently cased ones). `consequence`: what would happen to every
/// reservation ("removed", "reported as leaked").
pub fn guard_list(
    valid: &ValidSet,
    view: &NetworkView,
    force: bool,
    consequence: &str,
) -> Result<()> {
    if force {
        return Ok(());
    }
    let network = &view.name;
    if let Some(other) = valid.network.as_deref().filter(|n| n != network) {
        bail!(
            "valid attachments {}: a GC configuration for network {other:?}, not {network:?}; \
             refusing (use --force if that is meant)",
            valid.source
        );
    }
    let named: Vec<&Reservation> = view
        .reservations
        .iter()
        .filter(|r| !matches!(r.owner, Owner::Damaged))
        .collect();
    if named.is_empty() || named.iter().any(|r| valid.keeps(&r.owner)) {
        return Ok(());
    }
    let ids = || named.iter().filter_map(|r| r.owner.container_id());
    let why = if ids().any(|id| valid.truncates(id)) {
        ", or its IDs are truncated (use full IDs, e.g. `podman ps -q --no-trunc`, `crictl pods -q --no-trunc`)"
    } else if ids().any(|id| valid.differs_in_case(id)) {
        ", or its IDs differ in case from the store's (container IDs are case-sensitive: list them as the runtime prints them)"
    } else {
        ""
    };
    bail!(
        "valid attachments {}: the list keeps none of the {} reservations of network {network}, \
         so every one would be {consequence}; it is probably from another runtime or network{why}. \
         Refusing (use --force if every container of this network is really gone)",
        valid.source,
        named.len(),
    )
}

/// What `gc` leaves although it is not valid.
#[derive(Clone, Debug)]
pub struct KeepRule {
    /// `--min-age`.
    pub min_age: Duration,
    /// When the list of live attachments was made (seconds since the
    /// epoch; a file's modification time) and what it is, when known.
    pub list: Option<(f64, String)>,
}

impl KeepRule {
    /// Why `gc` keeps `r` (None: it may go), at `now` (seconds since the
    /// epoch): younger than `--min-age`, or made after the list was made
    /// (less `--min-age`, for a container not listed yet when it started).
    pub fn reason(&self, r: &Reservation, now: i64) -> Option<String> {
        let min_age = self.min_age.as_secs() as i64;
        // etcd records no times: the latest it can have been made stands in.
        let (mtime, bound) = match (r.mtime, &r.made_by) {
            (Some(m), _) => (m, None),
            (None, Some((at, what))) => (*at, Some(what.as_str())),
            (None, None) => {
                return Some(format!(
                    "age unknown; --min-age {} cannot be checked",
                    duration::show(self.min_age)
                ))
            }
        };
        let age = now - mtime;
        if age < min_age {
            return Some(match bound {
                None => format!(
                    "younger than --min-age {} ({} old); the container may have started after the list was made",
                    duration::show(self.min_age),
                    render::age(age.max(0))
                ),
                Some(what) => format!(
                    "may be younger than --min-age {}: etcd records no times, and {what} {} ago; \
                     the container may have started after the list was made",
                    duration::show(self.min_age),
                    render::age(age.max(0))
                ),
            });
        }
        let (made, what) = self.list.as_ref()?;
        // A list from the future (a skewed clock) was made now at the
        // latest (`now` is whole seconds).
        let made = made.min(now as f64 + 1.0);
        // Whole seconds: a reservation made in the second before the list
        // may show the same second, and goes only with --min-age.
        if (mtime as f64) < made - min_age as f64 {
            return None;
        }
        Some(match bound {
            None => format!(
                "made after {what} was written less --min-age {} (the list is {} old, the reservation {}); \
                 its container cannot be in it: make the list again",
                duration::show(self.min_age),
                render::age(now - made as i64),
                render::age(age)
            ),
            Some(bwhat) => format!(
                "may have been made after {what} was written less --min-age {}: etcd records no times, \
                 and {bwhat} {} ago (the list is {} old); make the list again",
                duration::show(self.min_age),
                render::age(age.max(0)),
                render::age(now - made as i64)
            ),
        })
    }
}
