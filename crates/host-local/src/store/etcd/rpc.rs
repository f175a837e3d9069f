//! The etcd client on a runtime of its own: a tokio current-thread runtime
//! and one gRPC client per endpoint, both created on the first session of
//! an etcd store (never for the disk store). Every call is bounded by the
//! session's deadline and spread over the members so that one slow, hung
//! or dead member costs a call little:
//!
//! - A **read** goes to the member that answered last; when it has not
//!   answered after a short delay (the hedge, at most 150 ms) the same read
//!   also goes to the next member, and so on; the first answer wins and
//!   the others are dropped. A member that refuses (nothing listening, no
//!   leader) or answers a passing failure (leader changed) is left at once
//!   and asked again after a pause, until the deadline.
//! - A **transaction** goes to one member at a time, each given at most a
//!   second (a quarter of the timeout when that is less); unanswered, it is
//!   sent to the next member. That is safe because every transaction this
//!   store sends is *guarded*: its compares make a second application a
//!   no-op (a reserve compares `create_revision == 0`, a release the
//!   `mod_revision` it read), so a transaction that timed out on one member
//!   and was applied after all makes the repeat fail its compares rather
//!   than apply twice. [`Rpc::resent`] tells the caller that an earlier
//!   attempt may have been applied, so a reserve that "conflicts" with its
//!   own earlier attempt is recognised (see `EtcdSession::commit`).
//!
//! A call that gives up names every member and what it did: did not
//! answer (and how long it was waited for), refused the connection, had no
//! leader, failed; and whether the call ran out of time or every member
//! refused it. TLS failing on every member is one error naming the files.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    AlarmAction, AlarmType, Certificate, Client, ConnectOptions, GetOptions, GetResponse, Identity,
    TlsOptions, Txn, TxnResponse,
};
use tokio::task::{AbortHandle, JoinSet};

use super::config::{EtcdConfig, TlsFiles};
use super::errors::{Attempt, EtcdError, Outcome};
use super::health::{Alarm, Health};
use crate::error::StoreError;

/// Longest a read waits on the members already asked before it asks the
/// next one as well.
const HEDGE_MAX: Duration = Duration::from_millis(150);
/// Longest a transaction waits on one member before it goes to the next.
const WRITE_ATTEMPT_MAX: Duration = Duration::from_secs(1);
/// Before asking again a member that answered a passing failure.
const PAUSE: Duration = Duration::from_millis(50);

/// The whole text of an error and its sources.
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// A failure's text for a message: a gRPC status's message and the
/// causes under it (its own text repeats them in debug form).
fn detail(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            let mut t = s.message().to_string();
            let mut cur = std::error::Error::source(s);
            while let Some(c) = cur {
                let c_text = c.to_string();
                if !t.contains(&c_text) {
                    t.push_str(": ");
                    t.push_str(&c_text);
                }
                cur = c.source();
            }
            t
        }
        other => chain(other),
    }
}

/// Whether a gRPC status code (tonic's numbering) can go away by itself.
fn retryable_code(code: i32) -> bool {
    // InvalidArgument 3, NotFound 5, AlreadyExists 6, PermissionDenied 7,
    // FailedPrecondition 9, OutOfRange 11, Unimplemented 12, Unauthenticated 16.
    ![3, 5, 6, 7, 9, 11, 12, 16].contains(&code)
}

/// What a failed attempt means for the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// The connection could not be made: certainly not delivered.
    Unreachable,
    /// The member has no leader (require-leader): not delivered.
    NoLeader,
    /// A passing failure (leader changed, timed out inside etcd, overload,
    /// connection lost): a transaction may have been applied.
    Passing,
    /// TLS failed, or the connection closed before this process ever got an
    /// answer with TLS on (a server refusing the client certificate after
    /// a TLS 1.3 handshake just hangs up).
    Tls,
    /// The answer exceeds the client's message limit.
    TooLarge,
    /// Anything else: the member's final answer.
    Final,
}

fn classify(e: &etcd_client::Error, tls: bool, answered: bool) -> Class {
    let text = chain(e).to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    let code = match e {
        etcd_client::Error::GRpcStatus(s) => Some(s.code() as i32),
        _ => None,
    };
    if code == Some(11) && text.contains("message length too large") {
        return Class::TooLarge;
    }
    if tls
        && has(&[
            "certificate",
            "unknownissuer",
            "handshake",
            "tls alert",
            "fatal alert",
        ])
    {
        return Class::Tls;
    }
    if has(&[
        "connection refused",
        "tcp connect error",
        "no route to host",
        "network is unreachable",
        "dns error",
    ]) {
        return Class::Unreachable;
    }
    if tls
        && !answered
        && has(&[
            "connection closed",
            "connection reset",
            "broken pipe",
            "canceled",
            "cancelled",
            "eof",
        ])
    {
        return Class::Tls;
    }
    if has(&["error trying to connect"]) {
        return Class::Unreachable;
    }
    if has(&["no leader"]) {
        return Class::NoLeader;
    }
    let passing_code = matches!(code, Some(1 | 4 | 10 | 14));
    let transport = matches!(
        e,
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_)
    );
    if passing_code
        || transport
        || has(&[
            "leader changed",
            "timed out",
            "too many requests",
            "revision of auth store is old",
            "server stopped",
            // The connection went away under the request (tonic reports
            // it as status Unknown "transport error").
            "transport error",
            "broken pipe",
            "connection reset",
            "connection closed",
        ])
    {
        return Class::Passing;
    }
    Class::Final
}

/// How a request may be repeated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Sent to more members after the hedge delay; first answer wins.
    Read,
    /// A guarded transaction: one member at a time, each for a bounded time.
    Guarded,
}

/// Clients for the configured endpoints, created lazily, one per endpoint.
pub struct Rpc {
    rt: tokio::runtime::Runtime,
    endpoints: Vec<String>,
    opts: ConnectOptions,
    clients: Vec<Option<Client>>,
    /// The endpoint tried first: the one that answered last.
    current: usize,
    /// Members that did not answer in time during this process: tried last.
    slow: Vec<bool>,
    tls: Option<TlsFiles>,
    timeout: Duration,
    /// Whether some call got an answer (TLS then works).
    answered: bool,
    /// Whether the last transaction was sent again after an attempt that
    /// may have been applied.
    resent: bool,
    /// Keeps SIGPIPE handled (see `new`).
    _sigpipe: tokio::signal::unix::Signal,
}

fn backend(op: &str, e: EtcdError, retryable: bool) -> StoreError {
    StoreError::Backend {
        backend: "etcd",
        op: op.to_string(),
        source: Box::new(e),
        retryable,
    }
}

/// Whether `e` says an answer would not fit the client's message limit.
pub(super) fn is_too_large(e: &StoreError) -> bool {
    match e {
        StoreError::Backend { source, .. } => matches!(
            source.downcast_ref::<EtcdError>(),
            Some(EtcdError::TooLarge { .. })
        ),
        _ => false,
    }
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, EtcdError> {
    let data = std::fs::read(path).map_err(|e| EtcdError::File {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if !data.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(EtcdError::File {
            what,
            path: path.to_path_buf(),
            reason: "no PEM block in the file".into(),
        });
    }
    Ok(data)
}

/// What one attempt hands back: the member, the attempt's number, a client
/// created for it, and the answer.
type Answer<T> = (usize, u64, Option<Client>, Result<T, etcd_client::Error>);

impl Rpc {
    /// Creates the runtime and the connection options (no network traffic
    /// yet: a client connects on its first call).
    pub fn new(cfg: &EtcdConfig) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| backend("start", EtcdError::Runtime(e), true))?;
        // A server that refuses our client certificate hangs up while the
        // client still writes (TLS 1.3); with SIGPIPE at its default (the
        // binary skips the Rust runtime that would ignore it) that write
        // would kill the process. tokio's handler turns it into EPIPE, for
        // the rest of the process, and only on the etcd path.
        let sigpipe = rt
            .block_on(async {
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::pipe())
            })
            .map_err(|e| backend("start", EtcdError::Runtime(e), true))?;
        let mut opts = ConnectOptions::new()
            .with_require_leader(true)
            .with_connect_timeout(cfg.timeout)
            .with_timeout(cfg.timeout)
            .with_auto_token_refresh(true);
        if let Some(t) = &cfg.tls {
            let read =
                |what, p: &Path| read_pem(what, p).map_err(|e| backend("read TLS files", e, false));
            let ca = read("ipam.store.tls.ca", &t.ca)?;
            let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
            if let Some((cert, key)) = &t.identity {
                let c = read("ipam.store.tls.cert", cert)?;
                let k = read("ipam.store.tls.key", key)?;
                tls = tls.identity(Identity::from_pem(c, k));
            }
            opts = opts.with_tls(tls);
        }
        // Spread the nodes' first choice over the members.
        let first = std::process::id() as usize % cfg.endpoints.len();
        Ok(Rpc {
            rt,
            endpoints: cfg.endpoints.clone(),
            opts,
            clients: cfg.endpoints.iter().map(|_| None).collect(),
            current: first,
            slow: vec![false; cfg.endpoints.len()],
            tls: cfg.tls.clone(),
            timeout: cfg.timeout,
            answered: false,
            resent: false,
            _sigpipe: sigpipe,
        })
    }

    /// TLS failed on every member that could be reached.
    fn tls_error(&self, op: &str, attempts: &[Attempt]) -> StoreError {
        let endpoint = attempts
            .iter()
            .map(|a| a.endpoint.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let detail = attempts
            .iter()
            .filter_map(|a| match &a.outcome {
                Outcome::Tls { detail } => Some(detail.as_str()),
                _ => None,
            })
            .next()
            .unwrap_or_default()
            .to_string();
        let mut files = String::new();
        if let Some(t) = &self.tls {
            files = format!("ipam.store.tls.ca {}", t.ca.display());
            match &t.identity {
                Some((c, k)) => files.push_str(&format!(
                    ", ipam.store.tls.cert {}, ipam.store.tls.key {}",
                    c.display(),
                    k.display()
                )),
                None => files
                    .push_str(" (no client certificate: ipam.store.tls.cert, ipam.store.tls.key)"),
            }
        }
        backend(
            op,
            EtcdError::Tls {
                endpoints: endpoint,
                detail,
                files,
            },
            false,
        )
    }

    /// The members in the order to try them: the one that answered last,
    /// then the others around the ring, those that did not answer earlier
    /// in this process last.
    fn order(&self) -> Vec<usize> {
        let n = self.endpoints.len();
        let mut o: Vec<usize> = (0..n).map(|k| (self.current + k) % n).collect();
        o.sort_by_key(|&i| self.slow[i]);
        o
    }

    /// Starts attempt `serial` of `f` on member `i`, connecting first when
    /// it has no client yet.
    fn spawn<T, F, G>(
        &self,
        set: &mut JoinSet<Answer<T>>,
        i: usize,
        serial: u64,
        f: &Arc<G>,
    ) -> AbortHandle
    where
        G: Fn(Client) -> F + Send + Sync + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
        T: Send + 'static,
    {
        let ep = self.endpoints[i].clone();
        let cached = self.clients[i].clone();
        let opts = self.opts.clone();
        let f = Arc::clone(f);
        set.spawn_on(
            async move {
                let (client, new) = match cached {
                    Some(c) => (c, None),
                    None => match Client::connect([ep.as_str()], Some(opts)).await {
                        Ok(c) => (c.clone(), Some(c)),
                        Err(e) => return (i, serial, None, Err(e)),
                    },
                };
                let r = f(client).await;
                (i, serial, new, r)
            },
            self.rt.handle(),
        )
    }

    /// Runs `f` against the members until one answers or the deadline
    /// passes (see the module documentation for reads and transactions).
    fn call<T, F, G>(
        &mut self,
        op: &str,
        deadline: Instant,
        kind: Kind,
        f: G,
    ) -> Result<T, StoreError>
    where
        G: Fn(Client) -> F + Send + Sync + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
        T: Send + 'static,
    {
        let f = Arc::new(f);
        let n = self.endpoints.len();
        let start = Instant::now();
        let hedge = (self.timeout / 10).clamp(Duration::from_millis(20), HEDGE_MAX);
        let write_attempt = if n == 1 {
            Duration::MAX
        } else {
            (self.timeout / 4).clamp(Duration::from_millis(250), WRITE_ATTEMPT_MAX)
        };
        let order = self.order();
        let mut set: JoinSet<Answer<T>> = JoinSet::new();
        // Per member: the attempt in flight (its number, abort handle, start).
        let mut flying: Vec<Option<(u64, AbortHandle, Instant)>> = (0..n).map(|_| None).collect();
        let mut ready_at = vec![start; n];
        let mut last: Vec<Option<Outcome>> = vec![None; n];
        // TLS failed on the member: not asked again in this call.
        let mut out = vec![false; n];
        let mut next_start = start;
        let mut serial = 0u64;
        let mut maybe_applied = false;
        self.resent = false;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if kind == Kind::Guarded {
                let expired = flying.iter().enumerate().find_map(|(i, x)| {
                    x.as_ref()
                        .filter(|(_, _, t)| now.saturating_duration_since(*t) >= write_attempt)
                        .map(|(_, h, t)| (i, h.clone(), *t))
                });
                if let Some((i, h, t)) = expired {
                    h.abort();
                    flying[i] = None;
                    last[i] = Some(Outcome::NoAnswer {
                        waited: now.saturating_duration_since(t),
                    });
                    self.slow[i] = true;
                    maybe_applied = true;
                    ready_at[i] = now + PAUSE;
                    continue;
                }
            }
            let in_flight = flying.iter().filter(|x| x.is_some()).count();
            let available = |i: usize| flying[i].is_none() && !out[i];
            let may_start = match kind {
                Kind::Read => in_flight == 0 || now >= next_start,
                Kind::Guarded => in_flight == 0,
            };
            if may_start {
                if let Some(i) = order
                    .iter()
                    .copied()
                    .find(|&i| available(i) && ready_at[i] <= now)
                {
                    serial += 1;
                    if kind == Kind::Guarded && maybe_applied {
                        self.resent = true;
                    }
                    let h = self.spawn(&mut set, i, serial, &f);
                    flying[i] = Some((serial, h, now));
                    next_start = now + hedge;
                    continue;
                }
            }
            if in_flight == 0 {
                // Every member failed this round: refused by all (fail
                // now), TLS failing wherever a connection was made (a
                // configuration problem), or wait for the next round.
                let tried = last.iter().all(Option::is_some);
                let unreachable =
                    |o: &Option<Outcome>| matches!(o, Some(Outcome::Unreachable { .. }));
                let tls = |o: &Option<Outcome>| matches!(o, Some(Outcome::Tls { .. }));
                if tried && last.iter().all(unreachable) {
                    return Err(backend(
                        op,
                        EtcdError::Refused {
                            attempts: self.attempts(&order, &last, &flying, now),
                        },
                        true,
                    ));
                }
                if tried && last.iter().any(tls) && last.iter().all(|o| tls(o) || unreachable(o)) {
                    return Err(self.tls_error(op, &self.attempts(&order, &last, &flying, now)));
                }
            }
            // Sleep until the next thing to do.
            let mut wake = deadline;
            let soonest = order
                .iter()
                .copied()
                .filter(|&i| available(i))
                .map(|i| ready_at[i])
                .min();
            if let Some(t) = soonest {
                if in_flight == 0 {
                    wake = wake.min(t);
                } else if kind == Kind::Read {
                    wake = wake.min(t.max(next_start));
                }
            }
            if kind == Kind::Guarded {
                if let Some((_, _, t)) = flying.iter().flatten().next() {
                    wake = wake.min(t.checked_add(write_attempt).unwrap_or(deadline));
                }
            }
            let wake = tokio::time::Instant::from_std(wake.max(now));
            let got = self.rt.block_on(async {
                if set.is_empty() {
                    tokio::time::sleep_until(wake).await;
                    None
                } else {
                    tokio::time::timeout_at(wake, set.join_next())
                        .await
                        .ok()
                        .flatten()
                }
            });
            let Some(joined) = got else { continue };
            let (i, s, client, result) = match joined {
                Ok(a) => a,
                Err(e) if e.is_cancelled() => continue,
                Err(e) => {
                    return Err(backend(
                        op,
                        EtcdError::Runtime(std::io::Error::other(e.to_string())),
                        false,
                    ))
                }
            };
            if let Some(c) = client {
                self.clients[i] = Some(c);
            }
            let now = Instant::now();
            let current = flying[i].as_ref().is_some_and(|(x, _, _)| *x == s);
            let e = match result {
                // A late answer of an attempt given up on is an answer all the same.
                Ok(v) => {
                    self.current = i;
                    self.answered = true;
                    self.slow[i] = false;
                    return Ok(v);
                }
                Err(_) if !current => continue,
                Err(e) => e,
            };
            flying[i] = None;
            next_start = now;
            let detail = detail(&e);
            let endpoint = self.endpoints[i].clone();
            match classify(&e, self.tls.is_some(), self.answered) {
                Class::Unreachable => {
                    last[i] = Some(Outcome::Unreachable { detail });
                    ready_at[i] = now + 4 * PAUSE;
                }
                Class::NoLeader => {
                    last[i] = Some(Outcome::NoLeader);
                    ready_at[i] = now + PAUSE;
                }
                Class::Passing => {
                    last[i] = Some(Outcome::Failed { detail });
                    ready_at[i] = now + PAUSE;
                    maybe_applied = true;
                }
                Class::Tls => {
                    last[i] = Some(Outcome::Tls { detail });
                    out[i] = true;
                }
                Class::TooLarge => {
                    return Err(backend(
                        op,
                        EtcdError::TooLarge {
                            endpoint,
                            limit: super::page::MESSAGE_LIMIT,
                            detail,
                        },
                        false,
                    ))
                }
                Class::Final => {
                    let retryable = match &e {
                        etcd_client::Error::GRpcStatus(s) => {
                            retryable_code(s.code() as i32) || detail.contains("compacted")
                        }
                        _ => false,
                    };
                    return Err(backend(
                        op,
                        EtcdError::Rpc {
                            endpoint,
                            source: e,
                        },
                        retryable,
                    ));
                }
            }
        }
        let now = Instant::now();
        for (i, x) in flying.iter().enumerate() {
            if x.is_some() {
                self.slow[i] = true;
            }
        }
        let attempts = self.attempts(&order, &last, &flying, now);
        if attempts
            .iter()
            .all(|a| matches!(a.outcome, Outcome::Tls { .. }))
            && !attempts.is_empty()
        {
            return Err(self.tls_error(op, &attempts));
        }
        Err(backend(
            op,
            EtcdError::OutOfTime {
                timeout: self.timeout,
                attempts,
            },
            true,
        ))
    }

    /// Each member's state, in the order tried: waiting (no answer yet) or
    /// its last outcome; members never asked are left out.
    fn attempts(
        &self,
        order: &[usize],
        last: &[Option<Outcome>],
        flying: &[Option<(u64, AbortHandle, Instant)>],
        now: Instant,
    ) -> Vec<Attempt> {
        order
            .iter()
            .filter_map(|&i| {
                let outcome = match (&flying[i], &last[i]) {
                    (Some((_, _, t)), _) => Outcome::NoAnswer {
                        waited: now.saturating_duration_since(*t),
                    },
                    (None, Some(o)) => o.clone(),
                    (None, None) => return None,
                };
                Some(Attempt {
                    endpoint: self.endpoints[i].clone(),
                    outcome,
                })
            })
            .collect()
    }

    pub fn get(
        &mut self,
        op: &str,
        deadline: Instant,
        key: Vec<u8>,
        opts: GetOptions,
    ) -> Result<GetResponse, StoreError> {
        self.call(op, deadline, Kind::Read, move |c| {
            let mut kv = c.kv_client();
            let (key, opts) = (key.clone(), opts.clone());
            async move { kv.get(key, Some(opts)).await }
        })
    }

    /// A guarded transaction: its compares must make a second application
    /// a no-op (see the module documentation), as it may be sent again.
    pub fn txn(
        &mut self,
        op: &str,
        deadline: Instant,
        txn: Txn,
    ) -> Result<TxnResponse, StoreError> {
        self.call(op, deadline, Kind::Guarded, move |c| {
            let mut kv = c.kv_client();
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
    }

    /// Whether the last [`Rpc::txn`] was sent again after an attempt whose
    /// outcome is unknown (it may have been applied before the answer
    /// that came).
    pub fn resent(&self) -> bool {
        self.resent
    }

    /// A member's view of the cluster (Maintenance.Status: answered locally,
    /// no raft round): whether it has a leader, the raised alarms.
    pub fn health(&mut self, deadline: Instant) -> Result<Health, StoreError> {
        let (leader, errors) = self.call("check health", deadline, Kind::Read, |c| {
            let mut m = c.maintenance_client();
            async move {
                let s = m.status().await?;
                Ok((s.leader(), s.errors().to_vec()))
            }
        })?;
        // The member that answered is the current one now.
        let endpoint = self.endpoints[self.current].clone();
        Ok(Health::from_status(&endpoint, leader, &errors))
    }

    /// Fails unless the cluster can take a write now: a leader, no alarm.
    pub fn writable(&mut self, deadline: Instant) -> Result<(), StoreError> {
        let h = self.health(deadline)?;
        if !h.alarms.is_empty() {
            return Err(backend(
                "check health",
                EtcdError::Alarm {
                    endpoint: h.endpoint,
                    alarms: h.alarms,
                },
                false,
            ));
        }
        if !h.has_leader {
            return Err(backend(
                "check health",
                EtcdError::NoLeader {
                    endpoint: h.endpoint,
                },
                true,
            ));
        }
        Ok(())
    }

    /// The cluster's raised alarms (Maintenance.AlarmList).
    pub fn alarms(&mut self, deadline: Instant) -> Result<Vec<Alarm>, StoreError> {
        self.call("list alarms", deadline, Kind::Read, |c| {
            let mut m = c.maintenance_client();
            async move {
                let r = m.alarm(AlarmAction::Get, AlarmType::None, None).await?;
                Ok(r.alarms().iter().filter_map(Alarm::from_member).collect())
            }
        })
    }

    /// The configured bound of one session.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: i32, msg: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(tonic::Code::from(code), msg))
    }

    #[test]
    fn failures_are_classified() {
        let cases = [
            (status(14, "etcdserver: no leader"), Class::NoLeader),
            (status(14, "etcdserver: leader changed"), Class::Passing),
            (status(14, "etcdserver: request timed out"), Class::Passing),
            (
                status(
                    11,
                    "Error, decoded message length too large: found 5600000 bytes, the limit is: 4194304 bytes",
                ),
                Class::TooLarge,
            ),
            (
                status(11, "etcdserver: mvcc: required revision has been compacted"),
                Class::Final,
            ),
            (
                status(8, "etcdserver: mvcc: database space exceeded"),
                Class::Final,
            ),
            (
                status(14, "error trying to connect: tcp connect error: Connection refused"),
                Class::Unreachable,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(classify(&e, false, false), want, "{e}");
        }
        let pipe = status(2, "transport error: stream closed because of a broken pipe");
        assert_eq!(classify(&pipe, false, false), Class::Passing);
        let closed = status(14, "transport error: connection closed");
        assert_eq!(classify(&closed, true, false), Class::Tls);
        assert_eq!(classify(&closed, true, true), Class::Passing);
        assert_eq!(classify(&closed, false, false), Class::Passing);
        let alert = status(
            14,
            "error trying to connect: received fatal alert: CertificateRequired",
        );
        assert_eq!(classify(&alert, true, false), Class::Tls);
    }
}
