//! The network configuration envelope.

use serde_json::{Map, Value};

use crate::env::NetworkName;
use crate::error::ProtoError;
use crate::gojson::{fold_eq, Doc, Kind};
use crate::version::SpecVersion;

/// The network configuration envelope. Unknown keys are kept in `extra` (in order).
#[derive(Clone, Debug, PartialEq)]
pub struct NetConf {
    pub cni_version: SpecVersion,
    pub name: NetworkName,
    /// `"type"` (empty when absent or not a string: the Go skeleton and host-local never decode
    /// it, so the reference serves `"type": []`).
    pub plugin_type: String,
    pub ipam: Option<Value>,
    pub dns: Option<Value>,
    pub args: Option<Value>,
    pub runtime_config: Option<Value>,
    pub prev_result: Option<Value>,
    pub extra: Map<String, Value>,
    /// The whole document as received (the last of duplicate keys kept).
    pub raw: Value,
    /// The whole document with every key, duplicates included, for decoding with Go's rules
    /// ([`crate::gojson`]).
    pub doc: Doc,
}

const KNOWN_KEYS: [&str; 8] = [
    "cniVersion",
    "name",
    "type",
    "ipam",
    "dns",
    "args",
    "runtimeConfig",
    "prevResult",
];

/// A string field of the envelope as Go's encoding/json finds it (keys match case-insensitively,
/// the last matching key wins, `null` assigns nothing).
/// A value of another type is code 6 with the reference's message: `prefix`, then Go's
/// `json: cannot unmarshal number into Go struct field .name of type string`.
fn string_field<'a>(doc: &'a Doc, key: &str, prefix: &str) -> Result<Option<&'a str>, ProtoError> {
    let go_type = match doc.field(key, Kind::Scalar) {
        None => return Ok(None),
        Some(Doc::String(s)) => return Ok(Some(s)),
        Some(Doc::Number(_)) => "number",
        Some(Doc::Bool(_)) => "bool",
        Some(Doc::Array(_)) => "array",
        Some(_) => "object",
    };
    Err(ProtoError::Decode {
        what: prefix.to_owned(),
        reason: format!(
            "json: cannot unmarshal {go_type} into Go struct field .{key} of type string"
        ),
    })
}

/// The reference's (skel) message for a stdin that is not a network config.
fn decode_err(reason: impl Into<String>) -> ProtoError {
    ProtoError::Decode {
        what: "error unmarshall network config".to_owned(),
        reason: reason.into(),
    }
}

/// Stage 1 (the reference's `validateConfig`): the bytes must be JSON whose top level decodes
/// into a struct (an object, or `null`), `name` must be a string, non-empty (code 7
/// "missing network name") and valid (code 7 "invalid characters found in network name").
/// Verified: empty stdin, whitespace and `{` are code 6; `[]` code 6; `{"name":5}` code 6;
/// `{}` and `{"name":""}` code 7.
pub(crate) fn decode_envelope(bytes: &[u8]) -> Result<(Doc, NetworkName), ProtoError> {
    let doc = Doc::parse(bytes).map_err(|e| {
        // Truncated input: Go's encoding/json says exactly this.
        decode_err(if e.is_eof() {
            "unexpected end of JSON input".to_string()
        } else {
            e.to_string()
        })
    })?;
    let name = match &doc {
        Doc::Null => None,
        Doc::Object(_) => string_field(&doc, "name", "error unmarshall network config")?,
        other => {
            let v = other.to_value();
            let go_type = match &v {
                Value::Number(_) => "number",
                Value::Bool(_) => "bool",
                Value::Array(_) => "array",
                _ => "string",
            };
            // Go's text first, then ours.
            return Err(decode_err(format!(
                "json: cannot unmarshal {go_type} into Go value of type struct {{ Name string \"json:\\\"name\\\"\" }} (the network config must be a JSON object, not {})",
                json_type(&v)
            )));
        }
    };
    let name = NetworkName::new(name.unwrap_or(""))?;
    Ok((doc, name))
}

/// The `cniVersion` text, the one place where absent, null or "" means "0.1.0" (as in the
/// reference, verified: a config without cniVersion gets a 0.1.0-shaped result with
/// `"cniVersion": "0.1.0"`). A non-string is code 6, as in the reference ("decoding version
/// from network config: ...").
pub(crate) fn version_text(doc: &Doc) -> Result<String, ProtoError> {
    Ok(declared_version(doc)?.unwrap_or_else(|| "0.1.0".to_owned()))
}

/// The `cniVersion` as written, None when absent, null or "".
pub(crate) fn declared_version(doc: &Doc) -> Result<Option<String>, ProtoError> {
    Ok(match doc {
        Doc::Object(_) => string_field(doc, "cniVersion", "decoding version from network config")?
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        _ => None,
    })
}

/// Map a version text to a spec version the plugin supports.
pub(crate) fn resolve_version(
    text: &str,
    supported: &[SpecVersion],
) -> Result<SpecVersion, ProtoError> {
    match SpecVersion::parse(text) {
        Some(v) if supported.contains(&v) => Ok(v),
        _ => Err(ProtoError::IncompatibleVersion {
            version: text.to_owned(),
            supported: supported.to_vec(),
        }),
    }
}

/// Stage 3: the remaining envelope fields.
pub(crate) fn finish(
    doc: Doc,
    name: NetworkName,
    cni_version: SpecVersion,
) -> Result<NetConf, ProtoError> {
    let plugin_type = match doc.field("type", Kind::Scalar) {
        Some(Doc::String(t)) => t.clone(),
        _ => String::new(),
    };
    let get = |k: &str| doc.field(k, Kind::Whole).map(Doc::to_value);
    let raw = doc.to_value();
    let extra = raw
        .as_object()
        .map(|obj| {
            obj.iter()
                .filter(|(k, _)| !KNOWN_KEYS.iter().any(|known| fold_eq(known, k)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    Ok(NetConf {
        cni_version,
        name,
        plugin_type,
        ipam: get("ipam"),
        dns: get("dns"),
        args: get("args"),
        runtime_config: get("runtimeConfig"),
        prev_result: get("prevResult"),
        extra,
        raw,
        doc,
    })
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl NetConf {
    /// Decode and validate the envelope: JSON (code 6), name (code 7), cniVersion (absent means
    /// 0.1.0; non-string code 6; unknown or not in `supported` code 1).
    pub fn parse(bytes: &[u8], supported: &[SpecVersion]) -> Result<NetConf, ProtoError> {
        let (doc, name) = decode_envelope(bytes)?;
        let version = resolve_version(&version_text(&doc)?, supported)?;
        finish(doc, name, version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> Result<NetConf, ProtoError> {
        NetConf::parse(s.as_bytes(), &SpecVersion::ALL)
    }

    #[test]
    fn full_envelope() {
        let c = parse(
            r#"{"cniVersion":"1.0.0","name":"net1","type":"host-local","zeta":1,
                "ipam":{"type":"host-local","subnet":"10.0.0.0/24"},"dns":{"nameservers":["1.1.1.1"]},
                "args":{"cni":{"ips":["10.0.0.5"]}},"runtimeConfig":{"ips":[]},
                "prevResult":{"ips":[]},"capabilities":{"ips":true},"alpha":null}"#,
        )
        .unwrap();
        assert_eq!(c.cni_version, SpecVersion::V1_0_0);
        assert_eq!(c.name.as_str(), "net1");
        assert_eq!(c.plugin_type, "host-local");
        assert_eq!(c.ipam.unwrap()["subnet"], json!("10.0.0.0/24"));
        assert_eq!(c.dns, Some(json!({"nameservers":["1.1.1.1"]})));
        assert_eq!(c.args, Some(json!({"cni":{"ips":["10.0.0.5"]}})));
        assert_eq!(c.runtime_config, Some(json!({"ips":[]})));
        assert_eq!(c.prev_result, Some(json!({"ips":[]})));
        let keys: Vec<_> = c.extra.keys().cloned().collect();
        assert_eq!(keys, ["zeta", "capabilities", "alpha"]);
        assert_eq!(c.raw["zeta"], json!(1));
    }

    #[test]
    fn minimal_and_missing_version_is_010() {
        let c = parse(r#"{"name":"n"}"#).unwrap();
        assert_eq!(c.cni_version, SpecVersion::V0_1_0);
        assert_eq!(c.plugin_type, "");
        assert_eq!(c.ipam, None);
        let c = parse(r#"{"name":"n","cniVersion":"","ipam":null}"#).unwrap();
        assert_eq!(c.cni_version, SpecVersion::V0_1_0);
        assert_eq!(c.ipam, None);
        // Only 0.3.0+ supported: a versionless config is 0.1.0 and refused.
        match NetConf::parse(br#"{"name":"n"}"#, &[SpecVersion::V1_0_0]) {
            Err(ProtoError::IncompatibleVersion { version, .. }) => assert_eq!(version, "0.1.0"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn go_style_case_insensitive_keys() {
        let c = parse(r#"{"NAME":"n","CNIVersion":"0.4.0","IPAM":{}}"#).unwrap();
        assert_eq!(c.name.as_str(), "n");
        assert_eq!(c.cni_version, SpecVersion::V0_4_0);
        assert_eq!(c.ipam, Some(json!({})));
        assert!(c.extra.is_empty());
    }

    #[test]
    fn go_style_duplicates_and_nulls() {
        let c = parse(
            r#"{"name":"a","NAME":null,"cniVersion":"0.4.0","CNIVersion":"1.0.0",
                "ipam":{"subnet":"x"},"Ipam":{"rangeStart":"y"},"dns":{"a":1},"DNS":null}"#,
        )
        .unwrap();
        // A null leaves a string as it was; the last key wins.
        assert_eq!(c.name.as_str(), "a");
        assert_eq!(c.cni_version, SpecVersion::V1_0_0);
        // `ipam` here is the last key's value; plugins decode `doc` to merge as Go does.
        assert_eq!(c.ipam, Some(json!({"rangeStart": "y"})));
        assert_eq!(c.dns, None);
        let Doc::Object(keys) = &c.doc else {
            panic!("{:?}", c.doc)
        };
        assert_eq!(keys.len(), 8);
    }

    #[test]
    fn decode_errors_are_code_6() {
        for bad in [
            "",
            "   ",
            "{",
            "[]",
            "5",
            "\"s\"",
            r#"{"name":5}"#,
            r#"{"name":"n","cniVersion":1}"#,
        ] {
            match parse(bad) {
                Err(e @ ProtoError::Decode { .. }) => {
                    let c: crate::CniError = e.into();
                    assert_eq!(c.code, 6, "{bad:?}");
                    assert!(
                        c.msg.starts_with("error unmarshall network config: ")
                            || c.msg
                                .starts_with("decoding version from network config: json: "),
                        "{}",
                        c.msg
                    );
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn name_errors_are_code_7() {
        for (bad, value) in [
            ("{}", ""),
            ("null", ""),
            (r#"{"name":""}"#, ""),
            (r#"{"name":null}"#, ""),
            (r#"{"name":"a/b"}"#, "a/b"),
            (r#"{"name":".."}"#, ".."),
        ] {
            match parse(bad) {
                Err(ProtoError::InvalidConfig {
                    field, value: v, ..
                }) => {
                    assert_eq!(field, "name");
                    assert_eq!(v, value, "{bad}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn version_errors() {
        for bad in ["9.9.9", "garbage", "1.0", "v1.0.0"] {
            match parse(&format!(r#"{{"name":"n","cniVersion":"{bad}"}}"#)) {
                Err(ProtoError::IncompatibleVersion { version, supported }) => {
                    assert_eq!(version, bad);
                    assert_eq!(supported, SpecVersion::ALL);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            NetConf::parse(
                br#"{"name":"n","cniVersion":"1.1.0"}"#,
                &SpecVersion::ALL[..6]
            ),
            Err(ProtoError::IncompatibleVersion { .. })
        ));
        // The name is checked before the version.
        assert!(matches!(
            parse(r#"{"name":"a/b","cniVersion":"9"}"#),
            Err(ProtoError::InvalidConfig { .. })
        ));
    }
}
