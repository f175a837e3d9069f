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
//! refused it. Refused credentials, permissions or TLS are one kind of
//! error ([`StoreError::Access`]) naming `ipam.store.auth` or
//! `ipam.store.tls` and the prefix.

use std::future::Future;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    AlarmAction, AlarmType, Certificate, Client, ConnectOptions, GetOptions, GetResponse, Identity,
    TlsOptions, Txn, TxnResponse,
};
use tokio::task::{AbortHandle, JoinSet};

use super::errors::{Attempt, Credential, EtcdError, Outcome};
use super::health::{Alarm, Health};
use crate::config::{AuthConfig, EtcdConfig, TlsFiles};
use crate::error::StoreError;

/// Longest a read waits on the members already asked before it asks the
/// next one as well.
const HEDGE_MAX: Duration = Duration::from_millis(150);
/// Longest a transaction waits on one member before it goes to the next.
const WRITE_ATTEMPT_MAX: Duration = Duration::from_secs(1);
/// Before asking again a member that answered a passing failure.
const PAUSE: Duration = Duration::from_millis(50);
/// Largest password file read.
const MAX_PASSWORD: u64 = 4096;

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
    /// Credentials or permissions refused.
    Access,
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
    if matches!(code, Some(7 | 16))
        || has(&[
            "authentication failed",
            "invalid user id or password",
            "user name is empty",
            "user name not found",
            "permission denied",
        ])
    {
        return Class::Access;
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

/// etcd answered an authentication request saying it has authentication
/// disabled: the credentials are not needed (yet).
fn auth_not_enabled(e: &etcd_client::Error) -> bool {
    chain(e).contains("authentication is not enabled")
}

/// Calls made by this process (each counted once, however many members it
/// was sent to): what the benchmark reads per invocation.
pub struct Calls {
    pub reads: AtomicU64,
    pub txns: AtomicU64,
}

pub static CALLS: Calls = Calls {
    reads: AtomicU64::new(0),
    txns: AtomicU64::new(0),
};

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
    /// A connection's options, with the credentials when `auth` is set.
    opts: ConnectOptions,
    /// The same without credentials.
    anonymous: ConnectOptions,
    clients: Vec<Option<Client>>,
    /// The endpoint tried first: the one that answered last.
    current: usize,
    /// Members that did not answer in time during this process: tried last.
    slow: Vec<bool>,
    tls: Option<TlsFiles>,
    auth: Option<AuthConfig>,
    /// etcd said it has authentication disabled: connect without credentials.
    auth_disabled: bool,
    /// Keys of the network (`P/N/`), named when access is refused.
    prefix: String,
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

fn access(op: &str, e: EtcdError) -> StoreError {
    StoreError::Access {
        backend: "etcd",
        op: op.to_string(),
        source: Box::new(e),
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

/// Why a password file may not be used: readable or writable by anyone
/// but its owner, or not a regular file. The `Err` of the outer result is
/// an I/O failure reading it.
fn read_password(path: &Path) -> Result<Result<String, String>, EtcdError> {
    const WHAT: &str = "ipam.store.auth.passwordFile";
    let io = |e: std::io::Error| EtcdError::File {
        what: WHAT,
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if !meta.is_file() {
        return Ok(Err("not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Ok(Err(format!(
            "group or others may access it (mode {mode:04o}, owner uid {}): it holds a password; chmod 600 {}",
            meta.uid(),
            path.display()
        )));
    }
    let mut text = String::new();
    f.take(MAX_PASSWORD + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_PASSWORD {
        return Ok(Err(format!("longer than {MAX_PASSWORD} bytes")));
    }
    let pw = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if pw.is_empty() {
        return Ok(Err("empty".into()));
    }
    Ok(Ok(pw.to_string()))
}

/// What one attempt hands back: the member, the attempt's number, a client
/// created for it, whether etcd said authentication is disabled, and the
/// answer.
type Answer<T> = (
    usize,
    u64,
    Option<Client>,
    bool,
    Result<T, etcd_client::Error>,
);

impl Rpc {
    /// Creates the runtime and the connection options (no network traffic
    /// yet: a client connects on its first call). `prefix` is the network's
    /// key prefix, named when etcd refuses access.
    pub fn new(cfg: &EtcdConfig, prefix: &str) -> Result<Self, StoreError> {
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
        let anonymous = opts.clone();
        if let Some(a) = &cfg.auth {
            let password = read_password(&a.password_file)
                .map_err(|e| backend("read the password file", e, false))?
                .map_err(|reason| {
                    access(
                        "read the password file",
                        EtcdError::File {
                            what: "ipam.store.auth.passwordFile",
                            path: a.password_file.clone(),
                            reason,
                        },
                    )
                })?;
            opts = opts.with_user(a.username.clone(), password);
        }
        // Spread the nodes' first choice over the members.
        let first = std::process::id() as usize % cfg.endpoints.len();
        Ok(Rpc {
            rt,
            endpoints: cfg.endpoints.clone(),
            opts,
            anonymous,
            clients: cfg.endpoints.iter().map(|_| None).collect(),
            current: first,
            slow: vec![false; cfg.endpoints.len()],
            tls: cfg.tls.clone(),
            auth: cfg.auth.clone(),
            auth_disabled: false,
            prefix: prefix.to_string(),
            timeout: cfg.timeout,
            answered: false,
            resent: false,
            _sigpipe: sigpipe,
        })
    }

    /// The credential etcd judged: the password when one is used, else the
    /// client certificate, else none.
    fn credential(&self) -> (Credential, Option<String>) {
        match (&self.auth, &self.tls) {
            (Some(a), _) if !self.auth_disabled => (Credential::Auth, Some(a.username.clone())),
            (_, Some(t)) if t.identity.is_some() => (Credential::Tls, None),
            _ => (Credential::None, None),
        }
    }

    /// etcd refused our credentials or their permissions.
    fn access_error(&self, op: &str, endpoint: &str, e: &etcd_client::Error) -> StoreError {
        let detail = detail(e);
        let lower = detail.to_ascii_lowercase();
        let (setting, user) = self.credential();
        let prefix = self.prefix.clone();
        let hint = if lower.contains("user name is empty") {
            "etcd has authentication enabled: set ipam.store.auth {\"username\", \"passwordFile\"}, \
             or a client certificate (ipam.store.tls.cert, ipam.store.tls.key) whose common name is an etcd user"
                .to_string()
        } else if lower.contains("authentication failed") || lower.contains("user name not found") {
            match &self.auth {
                Some(a) => format!(
                    "check ipam.store.auth.username and the password in {}",
                    a.password_file.display()
                ),
                None => "check the etcd user".into(),
            }
        } else if lower.contains("permission denied") {
            format!(
                "grant the user a role with readwrite on the prefix: \
                 etcdctl role grant-permission ROLE --prefix=true readwrite {prefix}"
            )
        } else {
            String::new()
        };
        access(
            op,
            EtcdError::Access {
                endpoint: endpoint.to_string(),
                setting,
                user,
                prefix,
                detail,
                hint,
            },
        )
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
        let hint = match &self.tls {
            Some(t) => {
                let mut h = format!(
                    "check ipam.store.tls: tls.ca {} must be the CA of the servers' certificates",
                    t.ca.display()
                );
                match &t.identity {
                    Some((c, k)) => h.push_str(&format!(
                        "; the servers must trust tls.cert {} (key tls.key {})",
                        c.display(),
                        k.display()
                    )),
                    None => h.push_str(
                        "; no client certificate is configured (ipam.store.tls.cert, ipam.store.tls.key): \
                         servers with --client-cert-auth hang up without one",
                    ),
                }
                h
            }
            None => String::new(),
        };
        access(
            op,
            EtcdError::Access {
                endpoint,
                setting: Credential::Tls,
                user: None,
                prefix: self.prefix.clone(),
                detail,
                hint,
            },
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
    /// it has no client yet (with credentials: one authentication).
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
        let with_auth = self.auth.is_some() && !self.auth_disabled;
        let opts = if with_auth {
            self.opts.clone()
        } else {
            self.anonymous.clone()
        };
        let anonymous = self.anonymous.clone();
        let f = Arc::clone(f);
        set.spawn_on(
            async move {
                let (client, new, disabled) = match cached {
                    Some(c) => (c, None, false),
                    None => match Client::connect([ep.as_str()], Some(opts)).await {
                        Ok(c) => (c.clone(), Some(c), false),
                        Err(e) if with_auth && auth_not_enabled(&e) => {
                            match Client::connect([ep.as_str()], Some(anonymous)).await {
                                Ok(c) => (c.clone(), Some(c), true),
                                Err(e) => return (i, serial, None, true, Err(e)),
                            }
                        }
                        Err(e) => return (i, serial, None, false, Err(e)),
                    },
                };
                let r = f(client).await;
                (i, serial, new, disabled, r)
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
        match kind {
            Kind::Read => CALLS.reads.fetch_add(1, Ordering::Relaxed),
            Kind::Guarded => CALLS.txns.fetch_add(1, Ordering::Relaxed),
        };
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
            let (i, s, client, disabled, result) = match joined {
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
            if disabled {
                self.auth_disabled = true;
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
                Class::Access => return Err(self.access_error(op, &endpoint, &e)),
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
            (status(7, "etcdserver: permission denied"), Class::Access),
            (
                status(3, "etcdserver: authentication failed, invalid user ID or password"),
                Class::Access,
            ),
            (status(3, "etcdserver: user name is empty"), Class::Access),
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

    #[test]
    fn password_files_must_be_private() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pw");
        std::fs::write(&p, "s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_password(&p).unwrap(), Ok("s3cret".to_string()));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = read_password(&p).unwrap().unwrap_err();
        assert!(e.contains("mode 0640"), "{e}");
        std::fs::write(&p, "\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(read_password(&p).unwrap(), Err("empty".to_string()));
        assert!(read_password(&d.path().join("missing")).is_err());
        assert_eq!(
            read_password(d.path()).unwrap(),
            Err("not a regular file".to_string())
        );
    }
}
