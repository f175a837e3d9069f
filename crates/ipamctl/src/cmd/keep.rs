//! What `gc` keeps on purpose although it is not valid, shared by `leaks`
//! (which marks these leaks) and `gc` (which leaves them): a container may
//! have started after the list of live attachments was made.

use std::time::Duration;

use crate::duration;
use crate::inspect::Reservation;
use crate::render;

/// The rule, from `--min-age`.
#[derive(Clone, Copy, Debug)]
pub struct KeepRule {
    pub min_age: Duration,
}

impl KeepRule {
    /// Why `gc` keeps `r` (None: it may go), at `now` (seconds since the epoch).
    pub fn reason(&self, r: &Reservation, now: i64) -> Option<String> {
        let min_age = self.min_age.as_secs() as i64;
        let age = r.mtime.map(|m| now - m);
        if age.is_some_and(|s| s >= min_age) {
            return None;
        }
        Some(format!(
            "younger than --min-age {} ({}); the container may have started after the list was made",
            duration::show(self.min_age),
            age.map_or_else(
                || "age unknown".to_string(),
                |s| format!("{} old", render::age(s))
            )
        ))
    }
}
