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

use super::config::{EtcdConfig, TlsFiles};
use crate::error::StoreError;

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("no answer within {timeout:?} from {endpoints}")]
    Timeout { timeout: Duration, endpoints: String },
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
    #[error("TLS handshake with {endpoints} failed ({detail}); check {files}")]
    Tls {
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

/// A client bound to one configuration, connected lazily.
pub struct Rpc {
    rt: tokio::runtime::Runtime,
    client: Client,
    endpoints: String,
    tls: Option<TlsFiles>,
    timeout: Duration,
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
    /// Creates the runtime and the client (no network traffic yet: tonic
    /// connects on the first call).
    pub fn new(cfg: &EtcdConfig) -> Result<Self, StoreError> {
        let endpoints = cfg.endpoints.join(",");
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
        let client = rt
            .block_on(Client::connect(&cfg.endpoints, Some(opts)))
            .map_err(|e| {
                let retryable = matches!(e, etcd_client::Error::TransportError(_));
                fail("connect", EtcdError::Rpc(e), retryable)
            })?;
        Ok(Rpc {
            rt,
            client,
            endpoints,
            tls: cfg.tls.clone(),
            timeout: cfg.timeout,
        })
    }

    /// The failure of `op`, classified.
    fn error(&self, op: &str, e: EtcdError) -> StoreError {
        let (e, retryable) = match e {
            EtcdError::Rpc(rpc) => {
                let text = chain(&rpc);
                let lower = text.to_ascii_lowercase();
                let tls_problem = self.tls.is_some()
                    && ["certificate", "unknownissuer", "handshake", "tls alert", "badsignature"]
                        .iter()
                        .any(|w| lower.contains(w));
                if let (true, Some(t)) = (tls_problem, &self.tls) {
                    let mut files = format!("tls.ca {}", t.ca.display());
                    if let Some((c, k)) = &t.identity {
                        files.push_str(&format!(
                            ", tls.cert {}, tls.key {}",
                            c.display(),
                            k.display()
                        ));
                    }
                    let e = EtcdError::Tls {
                        endpoints: self.endpoints.clone(),
                        detail: text,
                        files,
                    };
                    (e, false)
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

    /// Runs `f` on the runtime, bounded by `deadline`.
    fn call<T, F>(
        &self,
        op: &str,
        deadline: Instant,
        f: impl FnOnce(etcd_client::KvClient) -> F,
    ) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let kv = self.client.kv_client();
        let out = self
            .rt
            .block_on(async { tokio::time::timeout(left, f(kv)).await });
        match out {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error(op, EtcdError::Rpc(e))),
            Err(_) => Err(self.error(
                op,
                EtcdError::Timeout {
                    timeout: self.timeout,
                    endpoints: self.endpoints.clone(),
                },
            )),
        }
    }

    pub fn get(
        &self,
        op: &str,
        deadline: Instant,
        key: Vec<u8>,
        opts: GetOptions,
    ) -> Result<GetResponse, StoreError> {
        self.call(op, deadline, |mut kv| async move {
            kv.get(key, Some(opts)).await
        })
    }

    pub fn txn(&self, op: &str, deadline: Instant, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.call(op, deadline, |mut kv| async move { kv.txn(txn).await })
    }

    /// The configured bound of one session.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}
