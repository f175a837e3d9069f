//! Why an etcd call failed, with the members involved: which one did not
//! answer, which one refused, whether the call ran out of time or every
//! member refused it, and what etcd said when it refused our credentials.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::health::Alarm;

/// What one member did with one attempt of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing came back within the time this attempt was given (a hung or
    /// partitioned member keeps its connections open and answers nothing).
    NoAnswer { waited: Duration },
    /// The connection could not be made (nothing listening, unreachable).
    Unreachable { detail: String },
    /// The member answered that it has no leader.
    NoLeader,
    /// The member answered with a passing failure (leader changed, request
    /// timed out inside etcd, too many requests, connection lost).
    Failed { detail: String },
    /// TLS failed, or the connection closed before any answer with TLS on.
    Tls { detail: String },
}

/// One member's last outcome in a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub endpoint: String,
    pub outcome: Outcome,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ep = &self.endpoint;
        match &self.outcome {
            Outcome::NoAnswer { waited } => write!(f, "{ep} did not answer (waited {waited:.1?})"),
            Outcome::Unreachable { detail } => write!(f, "{ep} refused the connection ({detail})"),
            Outcome::NoLeader => write!(f, "{ep} has no leader"),
            Outcome::Failed { detail } => write!(f, "{ep} failed: {detail}"),
            Outcome::Tls { detail } => write!(f, "{ep}: TLS: {detail}"),
        }
    }
}

fn list(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// What refused access: the setting an operator has to look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    /// `ipam.store.auth`: username and password.
    Auth,
    /// `ipam.store.tls`: certificates.
    Tls,
    /// Neither is configured.
    None,
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Credential::Auth => "ipam.store.auth",
            Credential::Tls => "ipam.store.tls",
            Credential::None => "ipam.store.auth / ipam.store.tls (neither is set)",
        })
    }
}

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The call's time ran out before any member answered it.
    #[error("ran out of time ({timeout:?}) without an answer: {}", list(attempts))]
    OutOfTime {
        timeout: Duration,
        attempts: Vec<Attempt>,
    },
    /// Every member refused the connection: nothing to wait for.
    #[error("refused by every member: {}", list(attempts))]
    Refused { attempts: Vec<Attempt> },
    /// A member's answer: final for this call.
    #[error("{endpoint}: {source}")]
    Rpc {
        endpoint: String,
        #[source]
        source: etcd_client::Error,
    },
    /// The answer would exceed the client's message limit even for one key.
    #[error("{endpoint}: the answer exceeds the client's {limit} byte message limit ({detail})")]
    TooLarge {
        endpoint: String,
        limit: usize,
        detail: String,
    },
    /// etcd refused our credentials or their permissions, or TLS failed on
    /// every member: an operator has to fix `setting` or etcd's access rules.
    #[error("{endpoint}: access to prefix {prefix} refused ({setting}{}): {detail}{}",
        user.as_ref().map(|u| format!(", user {u:?}")).unwrap_or_default(),
        if hint.is_empty() { String::new() } else { format!("; {hint}") })]
    Access {
        endpoint: String,
        setting: Credential,
        user: Option<String>,
        prefix: String,
        detail: String,
        hint: String,
    },
    /// etcd raised an alarm: it refuses writes (NOSPACE) or reads too (CORRUPT).
    #[error("{endpoint}: etcd raised {}: {}", alarms.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "), Alarm::advice(alarms))]
    Alarm {
        endpoint: String,
        alarms: Vec<Alarm>,
    },
    /// The member that answered has no leader (no quorum).
    #[error("{endpoint}: etcd has no leader (no quorum: fewer than half of the members are up)")]
    NoLeader { endpoint: String },
    /// A TLS or password file could not be used.
    #[error("{what} {}: {reason}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot start the etcd client runtime: {0}")]
    Runtime(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_members_and_what_happened() {
        let attempts = vec![
            Attempt {
                endpoint: "http://a:1".into(),
                outcome: Outcome::NoAnswer {
                    waited: Duration::from_millis(4900),
                },
            },
            Attempt {
                endpoint: "http://b:2".into(),
                outcome: Outcome::Unreachable {
                    detail: "connection refused".into(),
                },
            },
            Attempt {
                endpoint: "http://c:3".into(),
                outcome: Outcome::NoLeader,
            },
        ];
        let t = EtcdError::OutOfTime {
            timeout: Duration::from_secs(5),
            attempts: attempts.clone(),
        }
        .to_string();
        assert!(t.starts_with("ran out of time (5s)"), "{t}");
        assert!(t.contains("http://a:1 did not answer (waited 4.9s)"), "{t}");
        assert!(t.contains("http://b:2 refused the connection"), "{t}");
        assert!(t.contains("http://c:3 has no leader"), "{t}");
        let r = EtcdError::Refused {
            attempts: attempts[1..2].to_vec(),
        }
        .to_string();
        assert!(r.starts_with("refused by every member: http://b:2"), "{r}");
        let a = EtcdError::Access {
            endpoint: "http://a:1".into(),
            setting: Credential::Auth,
            user: Some("cni".into()),
            prefix: "/cni/ipam/net/".into(),
            detail: "etcdserver: permission denied".into(),
            hint: "grant it".into(),
        }
        .to_string();
        assert_eq!(
            a,
            "http://a:1: access to prefix /cni/ipam/net/ refused (ipam.store.auth, user \"cni\"): \
             etcdserver: permission denied; grant it"
        );
    }
}
