//! The wire error object and the protocol layer's errors.

use std::fmt;

use serde_json::{json, Value};

use crate::env::Command;
use crate::version::SpecVersion;

/// Error codes reserved by the CNI specification (plus the reference's catch-all).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// The Go library's catch-all for plugin errors (`types.ErrInternal`). The reference uses it
    /// for CNI_ARGS errors; we give those the spec's code 4 (invalid environment variables).
    pub const INTERNAL: u32 = 999;
}

/// The wire error object. Printed as `{"cniVersion","code","msg","details"?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: Option<String>,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    /// The error object in the wire shape. `details` is left out when `None`. (The reference
    /// prints no `cniVersion` in its error object; the spec asks for one, so ours has it.)
    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({ "cniVersion": version, "code": self.code, "msg": self.msg });
        if let (Some(d), Some(obj)) = (&self.details, v.as_object_mut()) {
            obj.insert("details".to_owned(), Value::String(d.clone()));
        }
        v
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Like Go's types.Error: "msg; details".
        match &self.details {
            Some(d) if !d.is_empty() => write!(f, "{}; {}", self.msg, d),
            _ => f.write_str(&self.msg),
        }
    }
}

impl std::error::Error for CniError {}

/// Errors of the protocol layer. Each maps to a code in one place:
/// `impl From<ProtoError> for CniError`.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// Required variables that are unset or empty, in the reference's order.
    #[error("required env variables [{}] missing", vars.join(","))]
    MissingEnv { vars: Vec<&'static str> },
    /// A variable that is set but invalid. `reason` names the variable's meaning.
    #[error("{var}: {reason}: {value:?}")]
    InvalidEnv {
        var: &'static str,
        value: String,
        reason: String,
    },
    #[error("unknown CNI_COMMAND: {value}")]
    UnknownCommand { value: String },
    #[error("error reading from stdin: {source}")]
    Stdin { source: std::io::Error },
    /// Invalid JSON or a JSON value of the wrong type. `what` is the message's start (the
    /// reference's, e.g. "error unmarshall network config"), empty when `reason` is all of it.
    #[error("{what}{}{reason}", if what.is_empty() { "" } else { ": " })]
    Decode { what: String, reason: String },
    #[error("{reason}: {field} {value:?}")]
    InvalidConfig {
        field: String,
        value: String,
        reason: String,
    },
    #[error(
        "incompatible CNI versions: {}",
        incompatible_details(version, supported)
    )]
    IncompatibleVersion {
        version: String,
        supported: Vec<SpecVersion>,
    },
    #[error("config version does not allow {}: config is {:?}, {} needs {} or later",
        command.as_str(), version.as_str(), command.as_str(), min_version_for(*command).as_str())]
    CommandNotSupportedByVersion {
        command: Command,
        version: SpecVersion,
    },
    /// A result that cannot be expressed in the requested version's wire shape, or a
    /// result document that does not have the version's shape.
    #[error("cannot convert result to CNI version {version}: {reason}")]
    Convert {
        version: SpecVersion,
        reason: String,
    },
    /// CNI_ARGS syntax, an IgnoreUnknown value that is not a boolean, or unknown keys.
    /// `reason` is the complete message (the reference's wording, "ARGS: ...").
    #[error("{reason}")]
    InvalidArgs { value: String, reason: String },
}

/// The lowest spec version allowing `command`.
pub(crate) fn min_version_for(command: Command) -> SpecVersion {
    match command {
        Command::Check => SpecVersion::V0_4_0,
        Command::Gc | Command::Status => SpecVersion::V1_1_0,
        Command::Add | Command::Del | Command::Version => SpecVersion::V0_1_0,
    }
}

/// Go's `ErrorIncompatible.Details()`: `config is "9.9.9", plugin supports ["0.1.0" "0.2.0"]`.
fn incompatible_details(version: &str, supported: &[SpecVersion]) -> String {
    let list: Vec<String> = supported
        .iter()
        .map(|v| format!("{:?}", v.as_str()))
        .collect();
    format!(
        "config is {version:?}, plugin supports [{}]",
        list.join(" ")
    )
}

impl From<ProtoError> for CniError {
    /// The single place choosing codes. Messages keep the reference's wording where it has one
    /// (verified against /usr/lib/cni/host-local v1.1.1); the offending value goes in `details`
    /// as the reference does for container IDs and network names.
    fn from(e: ProtoError) -> CniError {
        match e {
            ProtoError::MissingEnv { .. } => CniError::new(code::INVALID_ENV, e.to_string()),
            ProtoError::InvalidEnv { var, value, reason } => {
                CniError::new(code::INVALID_ENV, reason).with_details(format!("{var}={value}"))
            }
            ProtoError::UnknownCommand { .. } => CniError::new(code::INVALID_ENV, e.to_string()),
            ProtoError::Stdin { .. } => CniError::new(code::IO, e.to_string()),
            ProtoError::Decode { .. } => CniError::new(code::DECODE, e.to_string()),
            ProtoError::InvalidConfig { value, reason, .. } => {
                let err = CniError::new(code::INVALID_CONFIG, reason);
                if value.is_empty() {
                    err
                } else {
                    err.with_details(value)
                }
            }
            ProtoError::IncompatibleVersion { version, supported } => {
                CniError::new(code::INCOMPATIBLE_VERSION, "incompatible CNI versions")
                    .with_details(incompatible_details(&version, &supported))
            }
            ProtoError::CommandNotSupportedByVersion { command, version } => CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("config version does not allow {}", command.as_str()),
            )
            .with_details(format!(
                "config is {:?}, {} needs {} or later",
                version.as_str(),
                command.as_str(),
                min_version_for(command).as_str()
            )),
            ProtoError::Convert { .. } => CniError::new(code::INCOMPATIBLE_VERSION, e.to_string()),
            ProtoError::InvalidArgs { value, reason } => {
                CniError::new(code::INVALID_ENV, reason).with_details(format!("CNI_ARGS={value}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cni(e: ProtoError) -> CniError {
        e.into()
    }

    #[test]
    fn error_object_shape() {
        let e = CniError::new(7, "bad");
        assert_eq!(
            e.to_json("1.0.0"),
            json!({"cniVersion": "1.0.0", "code": 7, "msg": "bad"})
        );
        let e = e.with_details("why");
        assert_eq!(
            e.to_json("0.3.1"),
            json!({"cniVersion": "0.3.1", "code": 7, "msg": "bad", "details": "why"})
        );
        // key order: cniVersion, code, msg, details
        let keys: Vec<_> = e
            .to_json("x")
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["cniVersion", "code", "msg", "details"]);
        assert_eq!(e.to_string(), "bad; why");
    }

    #[test]
    fn codes_and_messages() {
        // Reference: "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing", code 4.
        let e = cni(ProtoError::MissingEnv {
            vars: vec!["CNI_CONTAINERID", "CNI_PATH"],
        });
        assert_eq!(e.code, 4);
        assert_eq!(
            e.msg,
            "required env variables [CNI_CONTAINERID,CNI_PATH] missing"
        );

        let e = cni(ProtoError::InvalidEnv {
            var: "CNI_CONTAINERID",
            value: "-x".into(),
            reason: "invalid characters in containerID".into(),
        });
        assert_eq!(
            (e.code, e.msg.as_str(), e.details.as_deref()),
            (
                4,
                "invalid characters in containerID",
                Some("CNI_CONTAINERID=-x")
            )
        );

        let e = cni(ProtoError::UnknownCommand {
            value: "FOO".into(),
        });
        assert_eq!((e.code, e.msg.as_str()), (4, "unknown CNI_COMMAND: FOO"));

        let e = cni(ProtoError::Stdin {
            source: std::io::Error::other("boom"),
        });
        assert_eq!(
            (e.code, e.msg.as_str()),
            (5, "error reading from stdin: boom")
        );

        let e = cni(ProtoError::Decode {
            what: "error unmarshall network config".into(),
            reason: "EOF".into(),
        });
        assert_eq!(
            (e.code, e.msg.as_str()),
            (6, "error unmarshall network config: EOF")
        );

        let e = cni(ProtoError::InvalidConfig {
            field: "name".into(),
            value: "a/b".into(),
            reason: "invalid characters found in network name".into(),
        });
        assert_eq!(
            (e.code, e.msg.as_str(), e.details.as_deref()),
            (7, "invalid characters found in network name", Some("a/b"))
        );

        // Reference: details `config is "9.9.9", plugin supports ["0.1.0" "0.2.0" ...]`.
        let e = cni(ProtoError::IncompatibleVersion {
            version: "9.9.9".into(),
            supported: vec![SpecVersion::V0_1_0, SpecVersion::V0_2_0],
        });
        assert_eq!(e.code, 1);
        assert_eq!(e.msg, "incompatible CNI versions");
        assert_eq!(
            e.details.as_deref(),
            Some(r#"config is "9.9.9", plugin supports ["0.1.0" "0.2.0"]"#)
        );

        let e = cni(ProtoError::CommandNotSupportedByVersion {
            command: Command::Check,
            version: SpecVersion::V0_3_1,
        });
        assert_eq!(
            (e.code, e.msg.as_str()),
            (1, "config version does not allow CHECK")
        );

        let e = cni(ProtoError::Convert {
            version: SpecVersion::V0_2_0,
            reason: "no IP addresses".into(),
        });
        assert_eq!(e.code, 1);
        assert!(e.msg.contains("0.2.0") && e.msg.contains("no IP addresses"));

        // Reference: CNI_ARGS=garbage -> code 999 `ARGS: invalid pair "garbage"`; we say 4.
        let e = cni(ProtoError::InvalidArgs {
            value: "garbage".into(),
            reason: "ARGS: invalid pair \"garbage\"".into(),
        });
        assert_eq!(
            (e.code, e.msg.as_str()),
            (4, "ARGS: invalid pair \"garbage\"")
        );
    }
}
