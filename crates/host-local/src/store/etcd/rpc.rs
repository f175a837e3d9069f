//! The etcd client on a runtime of its own: a tokio current-thread runtime
//! and a gRPC client, both created on the first session of an etcd store
//! (never for the disk store), every call bounded by the session's deadline
//! and every failure mapped to [`StoreError::Backend`] with `retryable` set
//! when trying again later can help (unreachable, timed out, no leader).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, GetResponse, Identity, TlsOptions, Txn,
    TxnResponse,
};

use crate::config::{EtcdConfig, TlsFiles};
use crate::error::StoreError;

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("no answer within {timeout:?} from {endpoints}")]
    Timeout {
        timeout: Duration,
        endpoints: String,
    },
    #[error("{0}")]
    Rpc(#[from] etcd_client::Error),
    /// A TLS file could not be read or holds no PEM block.
    #[error("{what} {path}: {reason}")]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The TLS handshake failed: the message names the files involved.
    #[error("{endpoints}: {what} ({detail}); check {files}")]
    Tls {
        what: &'static str,
        endpoints: String,
        detail: String,
        files: String,
    },
    #[error("cannot start the etcd client runtime: {0}")]
    Runtime(std::io::Error),
}

/// The whole text of an error and its sources.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
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

/// Whether a gRPC status code (tonic's numbering) can go away by itself.
fn retryable_code(code: i32) -> bool {
    // InvalidArgument 3, NotFound 5, AlreadyExists 6, PermissionDenied 7,
    // FailedPrecondition 9, OutOfRange 11, Unimplemented 12, Unauthenticated 16.
    ![3, 5, 6, 7, 9, 11, 12, 16].contains(&code)
}

/// Clients for the configured endpoints, created lazily, one per
/// endpoint: a call goes to the current one and moves on to the next when
/// that one cannot take the request (refused connection, no leader), so a
/// dead member costs one refused connection, not the call.
pub struct Rpc {
    rt: tokio::runtime::Runtime,
    endpoints: Vec<String>,
    opts: ConnectOptions,
    clients: Vec<Option<Client>>,
    /// The endpoint tried first.
    current: usize,
    tls: Option<TlsFiles>,
    timeout: Duration,
    /// Whether some call got an answer (TLS then works).
    answered: bool,
    /// Keeps SIGPIPE handled (see `new`).
    _sigpipe: tokio::signal::unix::Signal,
}

/// Whether a failure is a passing state of the cluster that a read may
/// simply try again (on another member).
fn transient(e: &etcd_client::Error) -> bool {
    let t = chain(e).to_ascii_lowercase();
    ["leader changed", "timed out", "too many requests"]
        .iter()
        .any(|w| t.contains(w))
}

/// Whether a failure means the request never reached a member able to
/// apply it (connection refused, no leader): then another member may take
/// it, even a transaction.
fn not_delivered(e: &etcd_client::Error) -> bool {
    let t = chain(e).to_ascii_lowercase();
    [
        "tcp connect error",
        "connection refused",
        "no leader",
        "error trying to connect",
    ]
    .iter()
    .any(|w| t.contains(w))
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

impl Rpc {
    /// Creates the runtime and the connection options (no network traffic
    /// yet: a client connects on its first call).
    pub fn new(cfg: &EtcdConfig) -> Result<Self, StoreError> {
        let fail = |op: &str, e: EtcdError, retryable| StoreError::Backend {
            backend: "etcd",
            op: op.to_string(),
            source: Box::new(e),
            retryable,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail("start", EtcdError::Runtime(e), true))?;
        // A server that refuses our client certificate hangs up while the
        // client still writes (TLS 1.3); with SIGPIPE at its default (the
        // binary skips the Rust runtime that would ignore it) that write
        // would kill the process. tokio's handler turns it into EPIPE, for
        // the rest of the process, and only on the etcd path.
        let sigpipe = rt
            .block_on(async {
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::pipe())
            })
            .map_err(|e| fail("start", EtcdError::Runtime(e), true))?;
        let mut opts = ConnectOptions::new()
            .with_require_leader(true)
            .with_connect_timeout(cfg.timeout)
            .with_timeout(cfg.timeout);
        if let Some(t) = &cfg.tls {
            let ca = read_pem("tls.ca", &t.ca).map_err(|e| fail("read TLS files", e, false))?;
            let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
            if let Some((cert, key)) = &t.identity {
                let c = read_pem("tls.cert", cert).map_err(|e| fail("read TLS files", e, false))?;
                let k = read_pem("tls.key", key).map_err(|e| fail("read TLS files", e, false))?;
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
            tls: cfg.tls.clone(),
            timeout: cfg.timeout,
            answered: false,
            _sigpipe: sigpipe,
        })
    }

    /// The client of endpoint `i`, created on first use.
    fn client(&mut self, i: usize) -> Result<Client, etcd_client::Error> {
        if let Some(c) = &self.clients[i] {
            return Ok(c.clone());
        }
        let ep = [self.endpoints[i].as_str()];
        let c = self
            .rt
            .block_on(Client::connect(ep, Some(self.opts.clone())))?;
        self.clients[i] = Some(c.clone());
        Ok(c)
    }

    /// The failure of `op`, classified.
    fn error(&self, op: &str, e: EtcdError) -> StoreError {
        let (e, retryable) = match e {
            EtcdError::Rpc(rpc) => {
                let text = chain(&rpc);
                let lower = text.to_ascii_lowercase();
                let certain = ["certificate", "unknownissuer", "handshake", "tls alert"]
                    .iter()
                    .any(|w| lower.contains(w));
                // With TLS 1.3 a server checks the client's certificate after
                // the client finished its handshake, and may hang up without
                // an alert the client gets to read.
                let maybe = !self.answered
                    && [
                        "connection closed",
                        "canceled",
                        "broken pipe",
                        "connection reset",
                    ]
                    .iter()
                    .any(|w| lower.contains(w));
                if let (true, Some(t)) = (certain || maybe, &self.tls) {
                    let mut files = format!("tls.ca {}", t.ca.display());
                    if let Some((c, k)) = &t.identity {
                        files.push_str(&format!(
                            ", tls.cert {}, tls.key {}",
                            c.display(),
                            k.display()
                        ));
                    }
                    let e = EtcdError::Tls {
                        endpoints: self.endpoints.join(","),
                        detail: text,
                        files,
                        what: if certain {
                            "TLS handshake failed"
                        } else {
                            "connection closed before any answer (a refused client certificate?)"
                        },
                    };
                    (e, !certain)
                } else {
                    let retryable = match &rpc {
                        etcd_client::Error::GRpcStatus(s) => retryable_code(s.code() as i32),
                        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
                            true
                        }
                        _ => false,
                    };
                    (EtcdError::Rpc(rpc), retryable)
                }
            }
            other => {
                let retryable = matches!(other, EtcdError::Timeout { .. });
                (other, retryable)
            }
        };
        StoreError::Backend {
            backend: "etcd",
            op: op.to_string(),
            source: Box::new(e),
            retryable,
        }
    }

    /// Runs `f` on the runtime, everything bounded by `deadline`, starting
    /// at the endpoint that answered last. A request that was not delivered
    /// (refused connection, no leader) moves on to the next endpoint; when
    /// every endpoint refused it in a row the call fails at once. A read
    /// (`idempotent`) also moves on when a member does not answer within its
    /// share of the time left (a hung or partitioned member keeps its
    /// connections open) or answers a transient error (leader changed), and
    /// keeps trying until the deadline. A transaction is given all the time
    /// left and is never sent twice once it may have been applied.
    fn call<T, F>(
        &mut self,
        op: &str,
        deadline: Instant,
        idempotent: bool,
        f: impl Fn(etcd_client::KvClient) -> F,
    ) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.endpoints.len();
        let mut i = self.current;
        let mut refused_in_a_row = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let limit = if idempotent && n > 1 {
                (left / n as u32).max(Duration::from_millis(250)).min(left)
            } else {
                left
            };
            let kv = match self.client(i) {
                Ok(c) => c.kv_client(),
                Err(e) => return Err(self.error(op, EtcdError::Rpc(e))),
            };
            let out = self
                .rt
                .block_on(async { tokio::time::timeout(limit, f(kv)).await });
            let failure = match out {
                Ok(Ok(v)) => {
                    self.current = i;
                    self.answered = true;
                    return Ok(v);
                }
                Ok(Err(e)) if not_delivered(&e) => {
                    refused_in_a_row += 1;
                    let err = self.error(op, EtcdError::Rpc(e));
                    if refused_in_a_row == n {
                        return Err(err);
                    }
                    err
                }
                Ok(Err(e)) if idempotent && transient(&e) => {
                    refused_in_a_row = 0;
                    // A moment for the cluster (an election) to settle.
                    let pause = Duration::from_millis(50).min(left);
                    self.rt
                        .block_on(async move { tokio::time::sleep(pause).await });
                    self.error(op, EtcdError::Rpc(e))
                }
                Ok(Err(e)) => return Err(self.error(op, EtcdError::Rpc(e))),
                Err(_) => {
                    refused_in_a_row = 0;
                    let err = self.error(
                        op,
                        EtcdError::Timeout {
                            timeout: self.timeout,
                            endpoints: self.endpoints.join(","),
                        },
                    );
                    if !idempotent {
                        return Err(err);
                    }
                    err
                }
            };
            if Instant::now() >= deadline {
                return Err(failure);
            }
            i = (i + 1) % n;
        }
    }

    pub fn get(
        &mut self,
        op: &str,
        deadline: Instant,
        key: Vec<u8>,
        opts: GetOptions,
    ) -> Result<GetResponse, StoreError> {
        self.call(op, deadline, true, |mut kv| {
            let (key, opts) = (key.clone(), opts.clone());
            async move { kv.get(key, Some(opts)).await }
        })
    }

    pub fn txn(
        &mut self,
        op: &str,
        deadline: Instant,
        txn: Txn,
    ) -> Result<TxnResponse, StoreError> {
        self.call(op, deadline, false, |mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
    }

    /// The configured bound of one session.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}
