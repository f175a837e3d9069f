//! A blocking Kubernetes CRI v1 client: the `runtime.v1.RuntimeService`
//! calls kubelet makes for a pod sandbox, and `ListPodSandbox` for the
//! operator CLI (`ipamctl --cri`: the runtime's live sandboxes). Shared by
//! ipamctl and the CRI suite of host-local's integration tests, which drive
//! a private containerd with it.
//!
//! Transport: tonic (HTTP/2 gRPC) over the runtime's unix socket, as kubelet
//! dials it (containerd's `/run/containerd/containerd.sock`, CRI-O's
//! `/var/run/crio/crio.sock`). Messages: declared here with prost's derive,
//! each field with the number it has in kubernetes/cri-api
//! `pkg/apis/runtime/v1/api.proto` (Apache-2.0, the Kubernetes Authors).
//! Protobuf decoding skips fields a message does not declare, so declaring
//! only the fields used is wire-compatible with the full API. Why not
//! generate code from the whole api.proto: that needs protoc and
//! prost-build (a build script, a large generated module) in every build
//! for a handful of calls.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::codegen::http::uri::PathAndQuery;

#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionRequest {
    #[prost(string, tag = "1")]
    pub version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionResponse {
    #[prost(string, tag = "1")]
    pub version: String,
    #[prost(string, tag = "2")]
    pub runtime_name: String,
    #[prost(string, tag = "3")]
    pub runtime_version: String,
    #[prost(string, tag = "4")]
    pub runtime_api_version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub uid: String,
    #[prost(string, tag = "3")]
    pub namespace: String,
    #[prost(uint32, tag = "4")]
    pub attempt: u32,
}

/// `Protocol` enum: TCP = 0, UDP = 1, SCTP = 2.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PortMapping {
    #[prost(int32, tag = "1")]
    pub protocol: i32,
    #[prost(int32, tag = "2")]
    pub container_port: i32,
    #[prost(int32, tag = "3")]
    pub host_port: i32,
    #[prost(string, tag = "4")]
    pub host_ip: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxConfig {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(string, tag = "2")]
    pub hostname: String,
    #[prost(string, tag = "3")]
    pub log_directory: String,
    #[prost(message, repeated, tag = "5")]
    pub port_mappings: Vec<PortMapping>,
    #[prost(map = "string, string", tag = "6")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "7")]
    pub annotations: HashMap<String, String>,
    #[prost(message, optional, tag = "8")]
    pub linux: Option<LinuxPodSandboxConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxPodSandboxConfig {
    #[prost(string, tag = "1")]
    pub cgroup_parent: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxRequest {
    #[prost(message, optional, tag = "1")]
    pub config: Option<PodSandboxConfig>,
    #[prost(string, tag = "2")]
    pub runtime_handler: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxResponse {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxIdRequest {
    /// `pod_sandbox_id = 1` in StopPodSandboxRequest, RemovePodSandboxRequest
    /// and PodSandboxStatusRequest alike (the last adds `verbose = 2`).
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodIp {
    #[prost(string, tag = "1")]
    pub ip: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxNetworkStatus {
    #[prost(string, tag = "1")]
    pub ip: String,
    #[prost(message, repeated, tag = "2")]
    pub additional_ips: Vec<PodIp>,
}

/// `PodSandboxState`: SANDBOX_READY = 0, SANDBOX_NOTREADY = 1.
pub const SANDBOX_READY: i32 = 0;
pub const SANDBOX_NOTREADY: i32 = 1;

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatus {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(int32, tag = "3")]
    pub state: i32,
    #[prost(message, optional, tag = "5")]
    pub network: Option<PodSandboxNetworkStatus>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatusResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<PodSandboxStatus>,
    /// With `verbose`: containerd puts a JSON document under "info" (pid,
    /// runtime spec with the netns path, CNI result).
    #[prost(map = "string, string", tag = "2")]
    pub info: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodSandboxRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandbox {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(int32, tag = "3")]
    pub state: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodSandboxResponse {
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<PodSandbox>,
}

/// Why a CRI connection could not be made. (A call's failure is the
/// runtime's `tonic::Status`.)
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint is not `unix:///path` nor an absolute socket path.
    #[error("CRI endpoint {endpoint:?}: expected unix:///path/to/socket (or an absolute path)")]
    Endpoint { endpoint: String },
    #[error("tokio runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("connect {}: {source}", .socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
}

/// The socket of a CRI endpoint as kubelet and crictl take it
/// (`unix:///run/containerd/containerd.sock`), or an absolute path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, Error> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if path.starts_with('/') && !path.contains('\0') {
        Ok(PathBuf::from(path))
    } else {
        Err(Error::Endpoint {
            endpoint: endpoint.to_string(),
        })
    }
}

/// One connection to a CRI runtime socket, with its own single-threaded
/// tokio runtime: every call blocks until the answer (or `timeout`).
pub struct Cri {
    rt: tokio::runtime::Runtime,
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
}

const SERVICE: &str = "/runtime.v1.RuntimeService/";

impl Cri {
    /// Connects to the runtime at `socket`; every call then waits at most `timeout`.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Cri, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let sock: PathBuf = socket.to_path_buf();
        // The URI is only a placeholder: the connector dials the socket.
        let endpoint = tonic::transport::Endpoint::from_static("http://cri.invalid")
            .timeout(timeout)
            .connect_timeout(timeout);
        let channel = rt
            .block_on(endpoint.connect_with_connector(tower::service_fn(move |_| {
                let sock = sock.clone();
                async move {
                    let s = tokio::net::UnixStream::connect(sock).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                }
            })))
            .map_err(|source| Error::Connect {
                socket: socket.to_path_buf(),
                source,
            })?;
        Ok(Cri {
            rt,
            grpc: tonic::client::Grpc::new(channel),
        })
    }

    fn call<Q, A>(&mut self, method: &str, req: Q) -> Result<A, tonic::Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        A: prost::Message + Default + Send + Sync + 'static,
    {
        let path = PathAndQuery::try_from(format!("{SERVICE}{method}"))
            .map_err(|e| tonic::Status::internal(format!("method {method}: {e}")))?;
        let grpc = &mut self.grpc;
        self.rt.block_on(async move {
            grpc.ready()
                .await
                .map_err(|e| tonic::Status::unavailable(format!("not ready: {e}")))?;
            let codec = tonic_prost::ProstCodec::<Q, A>::default();
            grpc.unary(tonic::Request::new(req), path, codec)
                .await
                .map(tonic::Response::into_inner)
        })
    }

    pub fn version(&mut self) -> Result<VersionResponse, tonic::Status> {
        self.call(
            "Version",
            VersionRequest {
                version: "v1".into(),
            },
        )
    }

    pub fn run_pod_sandbox(&mut self, config: PodSandboxConfig) -> Result<String, tonic::Status> {
        let r: RunPodSandboxResponse = self.call(
            "RunPodSandbox",
            RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            },
        )?;
        Ok(r.pod_sandbox_id)
    }

    pub fn pod_sandbox_status(
        &mut self,
        id: &str,
        verbose: bool,
    ) -> Result<PodSandboxStatusResponse, tonic::Status> {
        self.call(
            "PodSandboxStatus",
            PodSandboxIdRequest {
                pod_sandbox_id: id.into(),
                verbose,
            },
        )
    }

    pub fn stop_pod_sandbox(&mut self, id: &str) -> Result<(), tonic::Status> {
        let _: Empty = self.call(
            "StopPodSandbox",
            PodSandboxIdRequest {
                pod_sandbox_id: id.into(),
                verbose: false,
            },
        )?;
        Ok(())
    }

    pub fn remove_pod_sandbox(&mut self, id: &str) -> Result<(), tonic::Status> {
        let _: Empty = self.call(
            "RemovePodSandbox",
            PodSandboxIdRequest {
                pod_sandbox_id: id.into(),
                verbose: false,
            },
        )?;
        Ok(())
    }

    pub fn list_pod_sandbox(&mut self) -> Result<Vec<PodSandbox>, tonic::Status> {
        let r: ListPodSandboxResponse = self.call("ListPodSandbox", ListPodSandboxRequest {})?;
        Ok(r.items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock").unwrap(),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(
            socket_path("/var/run/crio/crio.sock").unwrap(),
            PathBuf::from("/var/run/crio/crio.sock")
        );
        for bad in [
            "tcp://127.0.0.1:1234",
            "unix://relative.sock",
            "crio.sock",
            "",
        ] {
            assert!(socket_path(bad).is_err(), "{bad}");
        }
    }
}
