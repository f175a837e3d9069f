//! CNI specification versions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ProtoError;

/// A CNI specification version this crate knows how to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpecVersion {
    V0_1_0,
    V0_2_0,
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl SpecVersion {
    /// Every known version, oldest first.
    pub const ALL: [SpecVersion; 7] = [
        SpecVersion::V0_1_0,
        SpecVersion::V0_2_0,
        SpecVersion::V0_3_0,
        SpecVersion::V0_3_1,
        SpecVersion::V0_4_0,
        SpecVersion::V1_0_0,
        SpecVersion::V1_1_0,
    ];

    /// The newest version.
    pub const LATEST: SpecVersion = SpecVersion::V1_1_0;

    /// The version's wire text, e.g. `"0.3.1"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SpecVersion::V0_1_0 => "0.1.0",
            SpecVersion::V0_2_0 => "0.2.0",
            SpecVersion::V0_3_0 => "0.3.0",
            SpecVersion::V0_3_1 => "0.3.1",
            SpecVersion::V0_4_0 => "0.4.0",
            SpecVersion::V1_0_0 => "1.0.0",
            SpecVersion::V1_1_0 => "1.1.0",
        }
    }

    /// Exact match on the wire text only ("0.3.1" yes, "0.3" or " 0.3.1" no).
    pub fn parse(s: &str) -> Option<SpecVersion> {
        SpecVersion::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SpecVersion {
    type Err = ProtoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpecVersion::parse(s).ok_or_else(|| ProtoError::IncompatibleVersion {
            version: s.to_owned(),
            supported: SpecVersion::ALL.to_vec(),
        })
    }
}

impl Serialize for SpecVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SpecVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SpecVersion::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown CNI version {s:?}")))
    }
}

/// Go's `version.ParseVersion`: up to three dot-separated decimal parts. Used only where the
/// reference compares versions numerically (the CHECK rule), so that an unparseable version there
/// is a decode error (code 6) like the reference's. ("" never reaches it: the config layer's
/// `version_text` is the one place where an empty cniVersion means 0.1.0.)
pub(crate) fn go_parse(v: &str) -> Result<(i64, i64, i64), String> {
    let parts: Vec<&str> = v.split('.').collect();
    if parts.len() >= 4 {
        return Err(format!("invalid version {v:?}: too many parts"));
    }
    let mut out = [0i64; 3];
    for (i, (p, name)) in parts.iter().zip(["major", "minor", "micro"]).enumerate() {
        // strconv.Atoi accepts an optional sign and decimal digits.
        let digits = p.strip_prefix(['+', '-']).unwrap_or(p);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "failed to convert {name} version part {p:?}: invalid syntax"
            ));
        }
        out[i] = p
            .parse::<i64>()
            .map_err(|e| format!("failed to convert {name} version part {p:?}: {e}"))?;
    }
    Ok((out[0], out[1], out[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip() {
        for v in SpecVersion::ALL {
            assert_eq!(SpecVersion::parse(v.as_str()), Some(v));
            assert_eq!(v.to_string(), v.as_str());
            assert_eq!(v.as_str().parse::<SpecVersion>().unwrap(), v);
            let j = serde_json::to_value(v).unwrap();
            assert_eq!(j, serde_json::json!(v.as_str()));
            assert_eq!(serde_json::from_value::<SpecVersion>(j).unwrap(), v);
        }
        assert_eq!(SpecVersion::LATEST, SpecVersion::V1_1_0);
    }

    #[test]
    fn only_exact_strings() {
        for s in [
            "", "0.3", "1", " 0.3.1", "0.3.1 ", "v1.0.0", "9.9.9", "1.0.0.0",
        ] {
            assert_eq!(SpecVersion::parse(s), None, "{s:?}");
            assert!(matches!(
                s.parse::<SpecVersion>(),
                Err(ProtoError::IncompatibleVersion { .. })
            ));
        }
        assert!(serde_json::from_value::<SpecVersion>(serde_json::json!("2.0.0")).is_err());
    }

    #[test]
    fn ordered_oldest_first() {
        let mut sorted = SpecVersion::ALL;
        sorted.sort();
        assert_eq!(sorted, SpecVersion::ALL);
        assert!(SpecVersion::V0_3_1 < SpecVersion::V0_4_0);
    }

    #[test]
    fn go_version_parsing() {
        assert_eq!(go_parse("1.2.3"), Ok((1, 2, 3)));
        assert_eq!(go_parse("0.4"), Ok((0, 4, 0)));
        for bad in ["garbage", "asdf.", ".1", "0.", "..", "1.2.3.4"] {
            assert!(go_parse(bad).is_err(), "{bad:?}");
        }
    }
}
