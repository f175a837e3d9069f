//! The invocation environment: command, container ID, netns, ifname, CNI_ARGS, CNI_PATH.
//!
//! Over 600 lines only by its unit tests (from `mod tests` on, about half the file).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use crate::error::ProtoError;

/// A CNI operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }

    /// Exact, upper case only (the reference refuses `add` as an unknown command).
    pub fn parse(s: &str) -> Option<Command> {
        [
            Command::Add,
            Command::Del,
            Command::Check,
            Command::Gc,
            Command::Status,
            Command::Version,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    /// Variables required for this command besides CNI_COMMAND, in the reference's order
    /// (CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS, CNI_PATH).
    ///
    /// Verified with the reference: ADD and CHECK with nothing set report
    /// `[CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH]`, DEL `[CNI_CONTAINERID,CNI_IFNAME,CNI_PATH]`:
    /// the reference requires CNI_PATH too, and so do we. GC (1.1.0) needs CNI_PATH;
    /// STATUS and VERSION need nothing more.
    pub fn required_vars(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => &[CONTAINERID, NETNS, IFNAME, PATH],
            Command::Del => &[CONTAINERID, IFNAME, PATH],
            Command::Gc => &[PATH],
            Command::Status | Command::Version => &[],
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(crate) const COMMAND: &str = "CNI_COMMAND";
pub(crate) const CONTAINERID: &str = "CNI_CONTAINERID";
pub(crate) const NETNS: &str = "CNI_NETNS";
pub(crate) const IFNAME: &str = "CNI_IFNAME";
pub(crate) const ARGS: &str = "CNI_ARGS";
pub(crate) const PATH: &str = "CNI_PATH";

/// The spec's name rule `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$` (which already excludes "", ".",
/// "..", '/' and NUL).
pub(crate) fn is_valid_cni_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

macro_rules! name_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A validated container ID: non-empty, `[A-Za-z0-9][A-Za-z0-9_.-]*`.
    ContainerId
);
name_type!(
    /// A validated interface name: 1..=15 bytes, not "." or "..", no '/', ':' or whitespace.
    IfName
);
name_type!(
    /// A validated network name (the spec's rule, as for container IDs).
    NetworkName
);

impl ContainerId {
    /// Errors (code 4) name CNI_CONTAINERID and the value. Reference wording:
    /// `invalid characters in containerID` (details: the value); empty: `missing containerID`.
    pub fn new(s: &str) -> Result<Self, ProtoError> {
        let reason = if s.is_empty() {
            "missing containerID"
        } else if !is_valid_cni_name(s) {
            "invalid characters in containerID"
        } else {
            return Ok(ContainerId(s.to_owned()));
        };
        Err(ProtoError::InvalidEnv {
            var: CONTAINERID,
            value: s.to_owned(),
            reason: reason.to_owned(),
        })
    }
}

impl IfName {
    /// Go's `ValidateInterfaceName`, with the reference's messages (code 4).
    pub fn new(s: &str) -> Result<Self, ProtoError> {
        let reason = if s.is_empty() {
            "interface name is empty"
        } else if s.len() > 15 {
            "interface name is too long"
        } else if s == "." || s == ".." {
            "interface name is . or .."
        } else if s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
            "interface name contains / or : or whitespace characters"
        } else {
            return Ok(IfName(s.to_owned()));
        };
        Err(ProtoError::InvalidEnv {
            var: IFNAME,
            value: s.to_owned(),
            reason: reason.to_owned(),
        })
    }
}

impl NetworkName {
    /// Errors are code 7 with the reference's wording: `missing network name`, or
    /// `invalid characters found in network name` with the name as details.
    pub fn new(s: &str) -> Result<Self, ProtoError> {
        let reason = if s.is_empty() {
            "missing network name"
        } else if !is_valid_cni_name(s) {
            "invalid characters found in network name"
        } else {
            return Ok(NetworkName(s.to_owned()));
        };
        Err(ProtoError::InvalidConfig {
            field: "name".to_owned(),
            value: s.to_owned(),
            reason: reason.to_owned(),
        })
    }
}

/// CNI_ARGS `K=V;K2=V2`: ordered pairs; IgnoreUnknown=1|true|True recognised.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub pairs: Vec<(String, String)>,
    pub ignore_unknown: bool,
}

impl CniArgs {
    /// Go's `types.LoadArgs` syntax: "" is no pairs; otherwise split on ';' and every piece must
    /// split on '=' into exactly two parts (so `garbage`, a trailing `;` and `A=b=c` are
    /// refused: `ARGS: invalid pair "A=b=c"`). `IgnoreUnknown` (exact case) takes 1/0/true/false
    /// in any case; anything else is refused like the reference:
    /// `ARGS: error parsing value of pair "IgnoreUnknown=yes": boolean unmarshal error: invalid input yes`.
    /// The last IgnoreUnknown wins, whatever its position.
    pub fn parse(s: &str) -> Result<CniArgs, ProtoError> {
        let mut args = CniArgs::default();
        if s.is_empty() {
            return Ok(args);
        }
        let err = |reason: String| ProtoError::InvalidArgs {
            value: s.to_owned(),
            reason,
        };
        for pair in s.split(';') {
            let mut parts = pair.split('=');
            let (Some(k), Some(v), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(err(format!("ARGS: invalid pair {}", go_quote(pair))));
            };
            if k == "IgnoreUnknown" {
                args.ignore_unknown = match v.to_lowercase().as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    other => {
                        return Err(err(format!(
                            "ARGS: error parsing value of pair {}: boolean unmarshal error: invalid input {other}",
                            go_quote(pair)
                        )))
                    }
                };
            }
            args.pairs.push((k.to_owned(), v.to_owned()));
        }
        Ok(args)
    }

    /// The value of the last pair with this key (exact case).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Unless `ignore_unknown`, refuse keys not in `known` ("IgnoreUnknown" is always known;
    /// matching is case-sensitive as in Go's `FieldByName`). The message lists every unknown
    /// pair, like the reference: `ARGS: unknown args ["FOO=bar"]`.
    pub fn check_known(&self, known: &[&str]) -> Result<(), ProtoError> {
        if self.ignore_unknown {
            return Ok(());
        }
        let unknown: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != "IgnoreUnknown" && !known.contains(&k.as_str()))
            .map(|(k, v)| go_quote(&format!("{k}={v}")))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(ProtoError::InvalidArgs {
            value: self.to_string(),
            reason: format!("ARGS: unknown args [{}]", unknown.join(" ")),
        })
    }
}

impl fmt::Display for CniArgs {
    /// Back to the `K=V;K2=V2` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.pairs.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// Close enough to Go's `%q` for messages (Rust's `{:?}` escapes a little differently for
/// non-ASCII control characters only).
fn go_quote(s: &str) -> String {
    format!("{s:?}")
}

/// The environment of one invocation, validated for its command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    pub container_id: Option<ContainerId>,
    pub netns: Option<String>,
    pub ifname: Option<IfName>,
    pub args: CniArgs,
    pub path: Vec<PathBuf>,
}

pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// A variable's value: unset and empty are both `None`; non-UTF-8 is an error naming it.
pub(crate) fn var(lookup: Lookup<'_>, name: &'static str) -> Result<Option<String>, ProtoError> {
    match lookup(name) {
        None => Ok(None),
        Some(os) => match os.into_string() {
            Ok(s) if s.is_empty() => Ok(None),
            Ok(s) => Ok(Some(s)),
            Err(os) => Err(ProtoError::InvalidEnv {
                var: name,
                value: os.to_string_lossy().into_owned(),
                reason: format!("{name} is not valid UTF-8"),
            }),
        },
    }
}

impl Env {
    /// Read and validate the environment alone (no stdin), in the reference's order:
    /// CNI_COMMAND (missing: `required env variables [CNI_COMMAND] missing`; unknown: code 4),
    /// then every missing required variable in one error, then the container ID, the ifname,
    /// CNI_ARGS and CNI_PATH. [`crate::run`] interleaves the config checks between these stages
    /// as the reference does.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<OsString>) -> Result<Env, ProtoError> {
        let command = command_and_required(lookup)?;
        let (container_id, ifname) = ids(command, lookup)?;
        rest(command, container_id, ifname, lookup)
    }
}

/// Stage 1: the command and the presence of the required variables.
pub(crate) fn command_and_required(lookup: Lookup<'_>) -> Result<Command, ProtoError> {
    let raw = var(lookup, COMMAND)?.ok_or(ProtoError::MissingEnv {
        vars: vec![COMMAND],
    })?;
    // Deviation: the reference checks an unknown command only after validating stdin, the
    // container ID and the ifname; we refuse it at once (same code 4 and message).
    let command = Command::parse(&raw).ok_or(ProtoError::UnknownCommand { value: raw })?;
    let mut missing = Vec::new();
    for name in command.required_vars() {
        if var(lookup, name)?.is_none() {
            missing.push(*name);
        }
    }
    if missing.is_empty() {
        Ok(command)
    } else {
        Err(ProtoError::MissingEnv { vars: missing })
    }
}

/// Stage 2: container ID then ifname, validated when present (never for VERSION).
pub(crate) fn ids(
    command: Command,
    lookup: Lookup<'_>,
) -> Result<(Option<ContainerId>, Option<IfName>), ProtoError> {
    if command == Command::Version {
        return Ok((None, None));
    }
    let container_id = var(lookup, CONTAINERID)?
        .map(|s| ContainerId::new(&s))
        .transpose()?;
    let ifname = var(lookup, IFNAME)?.map(|s| IfName::new(&s)).transpose()?;
    Ok((container_id, ifname))
}

/// Stage 3: netns, CNI_ARGS, CNI_PATH.
pub(crate) fn rest(
    command: Command,
    container_id: Option<ContainerId>,
    ifname: Option<IfName>,
    lookup: Lookup<'_>,
) -> Result<Env, ProtoError> {
    let netns = var(lookup, NETNS)?;
    let args = match var(lookup, ARGS)? {
        Some(s) => CniArgs::parse(&s)?,
        None => CniArgs::default(),
    };
    // Like Go's filepath.SplitList, minus empty elements.
    let path = var(lookup, PATH)?
        .map(|p| {
            p.split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    Ok(Env {
        command,
        container_id,
        netns,
        ifname,
        args,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn lookup_from(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    fn env(vars: &[(&str, &str)]) -> Result<Env, ProtoError> {
        Env::from_lookup(&lookup_from(vars))
    }

    fn missing(r: Result<Env, ProtoError>) -> Vec<&'static str> {
        match r {
            Err(ProtoError::MissingEnv { vars }) => vars,
            other => panic!("expected MissingEnv, got {other:?}"),
        }
    }

    const FULL: [(&str, &str); 5] = [
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ("CNI_ARGS", "IgnoreUnknown=1;IP=10.0.0.5"),
    ];

    fn with_cmd(cmd: &'static str, skip: &[&str]) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = FULL
            .iter()
            .copied()
            .filter(|(k, _)| !skip.contains(k))
            .collect();
        v.push(("CNI_COMMAND", cmd));
        v
    }

    #[test]
    fn command_missing_or_unknown() {
        assert_eq!(missing(env(&[])), ["CNI_COMMAND"]);
        assert_eq!(missing(env(&[("CNI_COMMAND", "")])), ["CNI_COMMAND"]);
        for bad in ["FOO", "add", "Add", " ADD"] {
            match env(&[("CNI_COMMAND", bad)]) {
                Err(ProtoError::UnknownCommand { value }) => assert_eq!(value, bad),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn required_vars_per_command_in_reference_order() {
        // Verified against the reference binary with nothing else set.
        assert_eq!(
            missing(env(&[("CNI_COMMAND", "ADD")])),
            ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
        );
        assert_eq!(
            missing(env(&[("CNI_COMMAND", "CHECK")])),
            ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
        );
        assert_eq!(
            missing(env(&[("CNI_COMMAND", "DEL")])),
            ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"]
        );
        assert_eq!(missing(env(&[("CNI_COMMAND", "GC")])), ["CNI_PATH"]);
        assert!(env(&[("CNI_COMMAND", "STATUS")]).is_ok());
        assert!(env(&[("CNI_COMMAND", "VERSION")]).is_ok());
        // Partial combinations.
        assert_eq!(missing(env(&with_cmd("ADD", &["CNI_PATH"]))), ["CNI_PATH"]);
        assert_eq!(
            missing(env(&with_cmd("ADD", &["CNI_NETNS", "CNI_CONTAINERID"]))),
            ["CNI_CONTAINERID", "CNI_NETNS"]
        );
        // Empty counts as unset.
        let mut v = with_cmd("CHECK", &[]);
        v.push(("CNI_IFNAME", ""));
        let v: Vec<_> = v
            .into_iter()
            .filter(|(k, v)| *k != "CNI_IFNAME" || v.is_empty())
            .collect();
        assert_eq!(missing(env(&v)), ["CNI_IFNAME"]);
        // DEL does not need a netns.
        let e = env(&with_cmd("DEL", &["CNI_NETNS"])).unwrap();
        assert_eq!(e.netns, None);
    }

    #[test]
    fn full_add_env() {
        let e = env(&with_cmd("ADD", &[])).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.container_id.unwrap().as_str(), "c1");
        assert_eq!(e.netns.as_deref(), Some("/var/run/netns/x"));
        assert_eq!(e.ifname.unwrap().to_string(), "eth0");
        assert!(e.args.ignore_unknown);
        assert_eq!(e.args.get("IP"), Some("10.0.0.5"));
        assert_eq!(
            e.path,
            [PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
    }

    #[test]
    fn invalid_values_name_variable_and_value() {
        let mut v = with_cmd("ADD", &["CNI_CONTAINERID"]);
        v.push(("CNI_CONTAINERID", "-bad"));
        match env(&v) {
            Err(ProtoError::InvalidEnv { var, value, .. }) => {
                assert_eq!((var, value.as_str()), ("CNI_CONTAINERID", "-bad"))
            }
            other => panic!("{other:?}"),
        }
        let mut v = with_cmd("DEL", &["CNI_IFNAME"]);
        v.push(("CNI_IFNAME", "a:b"));
        match env(&v) {
            Err(ProtoError::InvalidEnv { var, value, reason }) => {
                assert_eq!((var, value.as_str()), ("CNI_IFNAME", "a:b"));
                assert_eq!(
                    reason,
                    "interface name contains / or : or whitespace characters"
                );
            }
            other => panic!("{other:?}"),
        }
        let mut v = with_cmd("ADD", &["CNI_ARGS"]);
        v.push(("CNI_ARGS", "garbage"));
        assert!(matches!(env(&v), Err(ProtoError::InvalidArgs { .. })));
    }

    #[test]
    fn non_utf8_names_the_variable() {
        use std::os::unix::ffi::OsStringExt;
        let l = |k: &str| match k {
            "CNI_COMMAND" => Some(OsString::from("ADD")),
            "CNI_NETNS" => Some(OsString::from_vec(vec![b'/', 0xff])),
            _ => Some(OsString::from("x")),
        };
        match Env::from_lookup(&l) {
            Err(ProtoError::InvalidEnv { var, .. }) => assert_eq!(var, "CNI_NETNS"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gc_and_status_need_no_ids() {
        let e = env(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/a::/b")]).unwrap();
        assert_eq!(e.container_id, None);
        assert_eq!(e.path, [PathBuf::from("/a"), PathBuf::from("/b")]);
        let e = env(&[("CNI_COMMAND", "STATUS")]).unwrap();
        assert!(e.path.is_empty());
        // VERSION never validates ids.
        assert!(env(&[("CNI_COMMAND", "VERSION"), ("CNI_CONTAINERID", "/")]).is_ok());
    }

    #[test]
    fn container_id_rule() {
        for ok in ["a", "0", "abc-DEF_1.2", "a..", "Z-"] {
            assert_eq!(ContainerId::new(ok).unwrap().as_ref(), ok);
        }
        for bad in [
            "", ".", "..", "-a", "_a", ".a", "a/b", "a b", "a\0", "é", "a:b", "a\n",
        ] {
            assert!(ContainerId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn network_name_rule() {
        assert_eq!(NetworkName::new("my-net.1").unwrap().as_str(), "my-net.1");
        for bad in ["", ".", "..", "a/b", "/", "-n", "a\0b", "n n"] {
            match NetworkName::new(bad) {
                Err(ProtoError::InvalidConfig { field, value, .. }) => {
                    assert_eq!((field.as_str(), value.as_str()), ("name", bad))
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn ifname_rule() {
        for ok in ["eth0", "a", "123456789012345", "veth-x.1", "...", "é"] {
            assert!(IfName::new(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "1234567890123456",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "a\u{a0}b",
            "a\u{85}",
        ] {
            assert!(IfName::new(bad).is_err(), "{bad:?}");
        }
        // 15 bytes, not characters: 8 two-byte characters are 16 bytes.
        assert!(IfName::new("éééééééé").is_err());
    }

    #[test]
    fn cni_args_parsing() {
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
        let a = CniArgs::parse("IP=10.0.0.1;K8S_POD_NAME=x;IP=10.0.0.2").unwrap();
        assert_eq!(a.pairs.len(), 3);
        assert_eq!(a.get("IP"), Some("10.0.0.2"));
        assert_eq!(a.get("ip"), None);
        assert!(!a.ignore_unknown);
        assert_eq!(a.to_string(), "IP=10.0.0.1;K8S_POD_NAME=x;IP=10.0.0.2");
        // Empty keys and values are syntactically fine (Go splits into exactly two parts).
        let a = CniArgs::parse("=v;K=").unwrap();
        assert_eq!(a.pairs, [("".into(), "v".into()), ("K".into(), "".into())]);

        // Reference messages (code 999): verified with CNI_ARGS=garbage, "IgnoreUnknown=1;",
        // "IgnoreUnknown=1;A=b=c", "IgnoreUnknown=yes;FOO=bar".
        for (input, msg) in [
            ("garbage", r#"ARGS: invalid pair "garbage""#),
            ("IgnoreUnknown=1;", r#"ARGS: invalid pair """#),
            ("IgnoreUnknown=1;A=b=c", r#"ARGS: invalid pair "A=b=c""#),
            (
                "IgnoreUnknown=yes;FOO=bar",
                r#"ARGS: error parsing value of pair "IgnoreUnknown=yes": boolean unmarshal error: invalid input yes"#,
            ),
        ] {
            match CniArgs::parse(input) {
                Err(ProtoError::InvalidArgs { value, reason }) => {
                    assert_eq!(value, input);
                    assert_eq!(reason, msg);
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn ignore_unknown_values() {
        for (v, expect) in [
            ("1", true),
            ("true", true),
            ("True", true),
            ("TRUE", true),
            ("0", false),
            ("false", false),
            ("False", false),
        ] {
            let a = CniArgs::parse(&format!("FOO=bar;IgnoreUnknown={v}")).unwrap();
            assert_eq!(a.ignore_unknown, expect, "{v}");
        }
        // Last one wins.
        assert!(
            !CniArgs::parse("IgnoreUnknown=1;IgnoreUnknown=0")
                .unwrap()
                .ignore_unknown
        );
        // Key is case-sensitive: "ignoreunknown" is just an unknown key (reference:
        // `ARGS: unknown args ["ignoreunknown=1" "FOO=bar"]`).
        let a = CniArgs::parse("ignoreunknown=1;FOO=bar").unwrap();
        assert!(!a.ignore_unknown);
        match a.check_known(&["IP"]) {
            Err(ProtoError::InvalidArgs { reason, .. }) => {
                assert_eq!(
                    reason,
                    r#"ARGS: unknown args ["ignoreunknown=1" "FOO=bar"]"#
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn check_known_keys() {
        let a = CniArgs::parse("FOO=bar").unwrap();
        match a.check_known(&["IP"]) {
            Err(ProtoError::InvalidArgs { value, reason }) => {
                assert_eq!(value, "FOO=bar");
                assert_eq!(reason, r#"ARGS: unknown args ["FOO=bar"]"#);
            }
            other => panic!("{other:?}"),
        }
        assert!(a.check_known(&["FOO"]).is_ok());
        assert!(CniArgs::parse("FOO=bar;IgnoreUnknown=1")
            .unwrap()
            .check_known(&["IP"])
            .is_ok());
        assert!(CniArgs::parse("IgnoreUnknown=0;IP=1.2.3.4")
            .unwrap()
            .check_known(&["IP"])
            .is_ok());
    }

    fn name_regex(s: &str) -> bool {
        // Independent formulation of ^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$.
        let allowed = |c: char, first: bool| {
            c.is_ascii_lowercase()
                || c.is_ascii_uppercase()
                || c.is_ascii_digit()
                || (!first && "_.-".contains(c))
        };
        !s.is_empty() && s.chars().enumerate().all(|(i, c)| allowed(c, i == 0))
    }

    proptest! {
        #[test]
        fn container_id_matches_regex(s in "\\PC{0,12}|[a-zA-Z0-9_.\\-/: ]{0,12}") {
            prop_assert_eq!(ContainerId::new(&s).is_ok(), name_regex(&s));
            prop_assert_eq!(NetworkName::new(&s).is_ok(), name_regex(&s));
        }

        #[test]
        fn ifname_rule_prop(s in "\\PC{0,17}|[a-z0-9./: \t]{0,17}") {
            let expect = !s.is_empty()
                && s.len() <= 15
                && s != "."
                && s != ".."
                && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
            prop_assert_eq!(IfName::new(&s).is_ok(), expect);
        }

        #[test]
        fn cni_args_round_trip(pairs in proptest::collection::vec(("[A-Za-z_0-9]{0,6}", "[^;=]{0,6}"), 1..5)) {
            let s: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let s = s.join(";");
            let a = CniArgs::parse(&s);
            let any_bad_ignore = pairs.iter().any(|(k, v)| k == "IgnoreUnknown"
                && !["1", "0", "true", "false"].contains(&v.to_lowercase().as_str()));
            if any_bad_ignore {
                prop_assert!(a.is_err());
            } else {
                let a = a.unwrap();
                prop_assert_eq!(a.to_string(), s);
                prop_assert_eq!(a.pairs.len(), pairs.len());
            }
        }
    }
}
