//! What STATUS asks etcd before it says the store is usable: whether the
//! member that answers has a leader and whether the cluster raised an alarm
//! (NOSPACE: the backend reached `--quota-backend-bytes` and every write is
//! refused; CORRUPT: a member's data disagrees with the others').
//!
//! STATUS reads both from one Maintenance.Status call: it is answered by
//! the member locally (no raft round, no log entry), and etcd lists the
//! cluster's alarms (replicated to every member) and a missing leader in
//! its `errors`. [`Alarm`]s from Maintenance.AlarmList (the cluster's own
//! list, one raft round) are what `alarms()` returns for the operator CLI.

use std::fmt;

/// A raised etcd alarm.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Alarm {
    /// The member that raised it (etcd's member ID, hex as etcdctl prints it).
    pub member: String,
    pub kind: AlarmKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AlarmKind {
    /// The backend database reached its quota: writes fail.
    NoSpace,
    /// A member's data is inconsistent with the cluster's.
    Corrupt,
    /// An alarm this client does not know, as etcd named it.
    Other(String),
}

impl AlarmKind {
    pub fn name(&self) -> &str {
        match self {
            AlarmKind::NoSpace => "NOSPACE",
            AlarmKind::Corrupt => "CORRUPT",
            AlarmKind::Other(s) => s,
        }
    }

    fn from_name(s: &str) -> AlarmKind {
        match s {
            "NOSPACE" => AlarmKind::NoSpace,
            "CORRUPT" => AlarmKind::Corrupt,
            other => AlarmKind::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Alarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "alarm {} (member {})", self.kind.name(), self.member)
    }
}

impl Alarm {
    /// From Maintenance.AlarmList.
    pub(super) fn from_member(m: &etcd_client::AlarmMember) -> Option<Alarm> {
        use etcd_client::AlarmType;
        let kind = match m.alarm() {
            AlarmType::None => return None,
            AlarmType::Nospace => AlarmKind::NoSpace,
            AlarmType::Corrupt => AlarmKind::Corrupt,
        };
        Some(Alarm {
            member: format!("{:x}", m.member_id()),
            kind,
        })
    }

    /// What an operator does about `alarms`.
    pub fn advice(alarms: &[Alarm]) -> &'static str {
        if alarms.iter().any(|a| a.kind == AlarmKind::Corrupt) {
            "its data is inconsistent between members; restore the member from a good one (etcd's disaster recovery), then etcdctl alarm disarm"
        } else if alarms.iter().any(|a| a.kind == AlarmKind::NoSpace) {
            "the backend reached --quota-backend-bytes and every write fails; compact (etcdctl compact), defragment (etcdctl defrag) and disarm it (etcdctl alarm disarm), and run etcd with --auto-compaction-retention"
        } else {
            "see etcdctl alarm list"
        }
    }
}

/// One member's view of the cluster's health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The member that answered.
    pub endpoint: String,
    /// It knows a leader.
    pub has_leader: bool,
    /// The cluster's raised alarms.
    pub alarms: Vec<Alarm>,
}

impl Health {
    /// From Maintenance.Status: `leader` 0 means none; `errors` holds one
    /// entry per alarm (`memberID:<decimal> alarm:<NAME> `) and etcd's
    /// "no leader" text.
    pub(super) fn from_status(endpoint: &str, leader: u64, errors: &[String]) -> Health {
        let mut alarms = Vec::new();
        let mut has_leader = leader != 0;
        for e in errors {
            if let Some(a) = parse_alarm(e) {
                if !alarms.contains(&a) {
                    alarms.push(a);
                }
            } else if e.contains("no leader") {
                has_leader = false;
            }
        }
        Health {
            endpoint: endpoint.to_string(),
            has_leader,
            alarms,
        }
    }
}

/// `memberID:3319814642761637952 alarm:NOSPACE ` (etcd's text form of an
/// AlarmMember).
fn parse_alarm(s: &str) -> Option<Alarm> {
    let mut member = None;
    let mut kind = None;
    for tok in s.split_whitespace() {
        if let Some(m) = tok.strip_prefix("memberID:") {
            member = m.parse::<u64>().ok().map(|m| format!("{m:x}"));
        } else if let Some(k) = tok.strip_prefix("alarm:") {
            kind = Some(AlarmKind::from_name(k));
        }
    }
    match kind? {
        AlarmKind::Other(k) if k == "NONE" => None,
        kind => Some(Alarm {
            member: member.unwrap_or_else(|| "?".into()),
            kind,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_errors_become_alarms_and_leader() {
        let h = Health::from_status(
            "http://a:1",
            7,
            &[
                "memberID:3319814642761637952 alarm:NOSPACE ".into(),
                "memberID:3319814642761637952 alarm:NOSPACE ".into(),
                "memberID:1 alarm:CORRUPT ".into(),
            ],
        );
        assert!(h.has_leader);
        assert_eq!(
            h.alarms,
            [
                Alarm {
                    member: "2e1259d415f2a040".into(),
                    kind: AlarmKind::NoSpace
                },
                Alarm {
                    member: "1".into(),
                    kind: AlarmKind::Corrupt
                }
            ]
        );
        assert_eq!(
            h.alarms[0].to_string(),
            "alarm NOSPACE (member 2e1259d415f2a040)"
        );
        let h = Health::from_status("http://a:1", 0, &["etcdserver: no leader".into()]);
        assert!(!h.has_leader && h.alarms.is_empty());
        assert!(Alarm::advice(&[Alarm {
            member: "1".into(),
            kind: AlarmKind::NoSpace
        }])
        .contains("--quota-backend-bytes"));
    }
}
