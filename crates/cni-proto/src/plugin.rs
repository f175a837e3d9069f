//! The plugin trait and [`run`], the dispatcher a plugin binary's `main` calls.

use std::ffi::OsString;
use std::io::{Read, Write};

use serde_json::json;

use crate::config::{self, NetConf};
use crate::env::{self, Command, Env};
use crate::error::{min_version_for, CniError, ProtoError};
use crate::gojson::Doc;
use crate::json::{to_go_compact, to_go_pretty};
use crate::result::CniResult;
use crate::version::{self, SpecVersion};

/// One validated invocation.
pub struct Request<'a> {
    pub env: &'a Env,
    pub config: &'a NetConf,
}

pub trait Plugin {
    /// The versions the plugin speaks, oldest first (printed by VERSION and the about text).
    fn supported_versions(&self) -> &[SpecVersion];
    /// One line, e.g. "host-local (rust) v0.1.0".
    fn about(&self) -> String;
    fn add(&mut self, req: &Request) -> Result<CniResult, CniError>;
    fn del(&mut self, req: &Request) -> Result<(), CniError>;
    fn check(&mut self, req: &Request) -> Result<(), CniError>;
    fn gc(&mut self, req: &Request) -> Result<(), CniError>;
    fn status(&mut self, req: &Request) -> Result<(), CniError>;
    /// Notes for the operator about the last command (a configuration served as the reference
    /// serves it although it looks wrong), printed on stderr by [`run`], one line each.
    fn take_notes(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// What the process should exit with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub exit_code: i32,
}

/// A failure with the version to put in the error object.
struct Failure {
    error: CniError,
    version: Option<String>,
}

impl From<ProtoError> for Failure {
    fn from(e: ProtoError) -> Self {
        Failure {
            error: e.into(),
            version: None,
        }
    }
}

/// Parse env and stdin, validate, dispatch, print the result or error object on stdout and the
/// about text on stderr.
///
/// Order of checks (the reference's, verified by running it):
/// 1. CNI_COMMAND unset or empty: the about line and
///    "CNI protocol versions supported: 0.1.0, ..." on stderr, nothing on stdout, exit 0.
///    Unknown command: code 4 "unknown CNI_COMMAND: X" (Deviation: the reference reports it only
///    after the stdin, container ID and ifname checks).
/// 2. VERSION: stdin is read but its validity does not matter; prints
///    `{"cniVersion":V,"supportedVersions":[...]}` compactly with a newline as the reference does.
///    V is the request's cniVersion when stdin parses and names a known version, else the newest
///    (Deviation: the reference always prints its library's version, "1.0.0").
/// 3. Missing required variables, all in one code-4 error.
/// 4. stdin read (code 5), then JSON (code 6), network name (code 7).
/// 5. Container ID, then ifname (code 4).
/// 6. cniVersion: non-string code 6; the command's minimum (CHECK 0.4.0, GC/STATUS 1.1.0,
///    code 1 "config version does not allow CHECK"); unknown or unsupported code 1
///    "incompatible CNI versions". For CHECK an unparseable version is code 6 as in the
///    reference.
/// 7. CNI_NETNS, CNI_ARGS (code 4; the reference says 999), CNI_PATH.
///
/// Success: ADD prints the result in the config's version (Go's four-space indent, no trailing
/// newline); other commands print nothing. Failure: the error object, exit 1.
pub fn run(
    plugin: &mut dyn Plugin,
    lookup: &dyn Fn(&str) -> Option<OsString>,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Outcome {
    let outcome = dispatch(plugin, lookup, stdin, stdout, stderr);
    for note in plugin.take_notes() {
        // stderr is informational only: a failed write must not change the outcome.
        let _ = writeln!(stderr, "{note}");
    }
    match outcome {
        Ok(()) => Outcome { exit_code: 0 },
        Err(f) => {
            let version = f
                .version
                .unwrap_or_else(|| SpecVersion::LATEST.as_str().to_owned());
            let out = to_go_pretty(&f.error.to_json(&version));
            let _ = stdout.write_all(&out);
            let _ = stdout.flush();
            Outcome { exit_code: 1 }
        }
    }
}

fn versions_line(plugin: &dyn Plugin) -> String {
    let list: Vec<&str> = plugin
        .supported_versions()
        .iter()
        .map(|v| v.as_str())
        .collect();
    list.join(", ")
}

/// The largest network configuration accepted on stdin. Real configurations
/// are a few KiB; anything this large is refused in bounded time and memory.
pub const MAX_STDIN: u64 = 1 << 20;

fn read_all(stdin: &mut dyn Read) -> Result<Vec<u8>, ProtoError> {
    crate::read_bounded(stdin, MAX_STDIN, "network configuration")
        .map_err(|source| ProtoError::Stdin { source })
}

/// The version for the error object: the config's cniVersion when it is a known version
/// (absent means 0.1.0), else none (the newest is used).
fn error_version(doc: &Doc) -> Option<String> {
    let v = config::version_text(doc).ok()?;
    SpecVersion::parse(&v).map(|_| v)
}

fn dispatch(
    plugin: &mut dyn Plugin,
    lookup: &dyn Fn(&str) -> Option<OsString>,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<(), Failure> {
    if env::var(lookup, env::COMMAND)?.is_none() {
        let about = plugin.about();
        // As Go's skel: with no about text, a missing CNI_COMMAND is an ordinary code-4 error.
        if !about.is_empty() {
            let text = format!(
                "{about}\nCNI protocol versions supported: {}\n",
                versions_line(plugin)
            );
            let _ = stderr.write_all(text.as_bytes());
            let _ = stderr.flush();
            return Ok(());
        }
    }
    let command = env::command_and_required(lookup)?;

    if command == Command::Version {
        let requested = read_all(stdin)
            .ok()
            .and_then(|b| Doc::parse(&b).ok())
            .and_then(|v| config::declared_version(&v).ok().flatten())
            .and_then(|s| SpecVersion::parse(&s))
            .unwrap_or(SpecVersion::LATEST);
        let supported: Vec<&str> = plugin
            .supported_versions()
            .iter()
            .map(|v| v.as_str())
            .collect();
        let mut out = to_go_compact(&json!({
            "cniVersion": requested.as_str(),
            "supportedVersions": supported,
        }));
        out.push(b'\n');
        return write_out(stdout, &out, None);
    }

    let bytes = read_all(stdin)?;
    let (raw, name) = config::decode_envelope(&bytes).map_err(|e| Failure {
        error: e.into(),
        version: Doc::parse(&bytes).ok().and_then(|v| error_version(&v)),
    })?;
    let err_version = error_version(&raw);
    let fail = |e: ProtoError| Failure {
        error: e.into(),
        version: err_version.clone(),
    };

    let (container_id, ifname) = env::ids(command, lookup).map_err(fail)?;
    let cni_version = check_version(command, &raw, plugin.supported_versions()).map_err(fail)?;
    let env = env::rest(command, container_id, ifname, lookup).map_err(fail)?;
    let config = config::finish(raw, name, cni_version).map_err(fail)?;
    let fail_cni = |error: CniError| Failure {
        error,
        version: err_version.clone(),
    };

    let req = Request {
        env: &env,
        config: &config,
    };
    match command {
        Command::Add => {
            let result = plugin.add(&req).map_err(fail_cni)?;
            let wire = result.to_wire(cni_version).map_err(fail)?;
            write_out(stdout, &to_go_pretty(&wire), err_version.clone())
        }
        Command::Del => plugin.del(&req).map_err(fail_cni),
        Command::Check => plugin.check(&req).map_err(fail_cni),
        Command::Gc => plugin.gc(&req).map_err(fail_cni),
        Command::Status => plugin.status(&req).map_err(fail_cni),
        Command::Version => Ok(()),
    }
}

fn write_out(stdout: &mut dyn Write, bytes: &[u8], version: Option<String>) -> Result<(), Failure> {
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure {
            error: CniError::new(crate::code::IO, format!("error writing to stdout: {e}")),
            version,
        })
}

/// The config's version, checked against the command's minimum and the plugin's list.
fn check_version(
    command: Command,
    raw: &Doc,
    supported: &[SpecVersion],
) -> Result<SpecVersion, ProtoError> {
    let text = config::version_text(raw)?;
    let min = min_version_for(command);
    match SpecVersion::parse(&text) {
        Some(v) if v < min => {
            return Err(ProtoError::CommandNotSupportedByVersion {
                command,
                version: v,
            })
        }
        Some(_) => {}
        None if command == Command::Check => {
            // The reference compares numerically for CHECK: an unparseable version is code 6
            // (verified: `failed to convert major version part "garbage" ...`).
            if let Err(reason) = version::go_parse(&text) {
                return Err(ProtoError::Decode {
                    what: String::new(),
                    reason,
                });
            }
        }
        None => {}
    }
    config::resolve_version(&text, supported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{Dns, IpConfig, Route};
    use serde_json::{json, Value};
    use std::collections::HashMap;

    #[derive(Default)]
    struct Fake {
        versions: Vec<SpecVersion>,
        calls: Vec<(Command, String, Option<String>)>,
        result: Option<CniResult>,
        fail: Option<CniError>,
        notes: Vec<String>,
    }

    impl Fake {
        fn new() -> Fake {
            Fake {
                versions: SpecVersion::ALL.to_vec(),
                result: Some(sample()),
                ..Fake::default()
            }
        }
        fn record(&mut self, c: Command, req: &Request) -> Result<(), CniError> {
            self.calls.push((
                c,
                req.config.name.to_string(),
                req.env.container_id.as_ref().map(|c| c.to_string()),
            ));
            match &self.fail {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            }
        }
    }

    impl Plugin for Fake {
        fn supported_versions(&self) -> &[SpecVersion] {
            &self.versions
        }
        fn about(&self) -> String {
            "fake (rust) v0.0.1".into()
        }
        fn add(&mut self, req: &Request) -> Result<CniResult, CniError> {
            self.record(Command::Add, req)?;
            Ok(self.result.clone().unwrap_or_default())
        }
        fn del(&mut self, req: &Request) -> Result<(), CniError> {
            self.record(Command::Del, req)
        }
        fn check(&mut self, req: &Request) -> Result<(), CniError> {
            self.record(Command::Check, req)
        }
        fn gc(&mut self, req: &Request) -> Result<(), CniError> {
            self.record(Command::Gc, req)
        }
        fn status(&mut self, req: &Request) -> Result<(), CniError> {
            self.record(Command::Status, req)
        }
        fn take_notes(&mut self) -> Vec<String> {
            std::mem::take(&mut self.notes)
        }
    }

    #[test]
    fn notes_go_to_stderr_after_success_and_failure() {
        for fail in [None, Some(CniError::new(7, "bad"))] {
            let mut p = Fake::new();
            p.notes = vec!["note one".into(), "note two".into()];
            p.fail = fail.clone();
            let o = call(&mut p, &ADD, &conf("1.0.0"));
            assert_eq!(o.code, i32::from(fail.is_some()));
            assert_eq!(o.stderr, "note one\nnote two\n");
        }
    }

    fn sample() -> CniResult {
        CniResult {
            ips: vec![IpConfig {
                address: "10.9.0.2/24".parse().unwrap(),
                gateway: Some("10.9.0.1".parse().unwrap()),
                interface: None,
            }],
            ..CniResult::default()
        }
    }

    struct Out {
        code: i32,
        stdout: String,
        stderr: String,
    }

    impl Out {
        fn json(&self) -> Value {
            serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", self.stdout))
        }
        fn err(&self) -> (u64, String) {
            assert_eq!(self.code, 1, "{}", self.stdout);
            let v = self.json();
            (
                v["code"].as_u64().unwrap(),
                v["msg"].as_str().unwrap().to_owned(),
            )
        }
    }

    fn call(plugin: &mut Fake, vars: &[(&str, &str)], stdin: &str) -> Out {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        let lookup = move |k: &str| map.get(k).cloned();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let o = run(plugin, &lookup, &mut stdin.as_bytes(), &mut out, &mut err);
        Out {
            code: o.exit_code,
            stdout: String::from_utf8(out).unwrap(),
            stderr: String::from_utf8(err).unwrap(),
        }
    }

    const ADD: [(&str, &str); 5] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ];

    fn vars(
        cmd: &'static str,
        extra: &[(&'static str, &'static str)],
    ) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = ADD
            .iter()
            .copied()
            .filter(|(k, _)| *k != "CNI_COMMAND" && !extra.iter().any(|(e, _)| e == k))
            .collect();
        v.push(("CNI_COMMAND", cmd));
        v.extend(extra.iter().copied().filter(|(_, v)| !v.is_empty()));
        v
    }

    fn conf(version: &str) -> String {
        format!(
            r#"{{"cniVersion":"{version}","name":"n","type":"host-local","ipam":{{"type":"host-local"}}}}"#
        )
    }

    #[test]
    fn no_command_prints_about() {
        for v in [vec![], vec![("CNI_COMMAND", "")]] {
            let mut p = Fake::new();
            p.versions = SpecVersion::ALL[..6].to_vec();
            let o = call(&mut p, &v, "");
            assert_eq!(o.code, 0);
            assert_eq!(o.stdout, "");
            assert_eq!(
                o.stderr,
                "fake (rust) v0.0.1\nCNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0\n"
            );
            assert!(p.calls.is_empty());
        }
    }

    #[test]
    fn unknown_command() {
        let o = call(&mut Fake::new(), &[("CNI_COMMAND", "FOO")], "");
        assert_eq!(o.err(), (4, "unknown CNI_COMMAND: FOO".into()));
        assert_eq!(o.json()["cniVersion"], json!("1.1.0"));
    }

    #[test]
    fn version_command() {
        // Reference prints compact JSON plus a newline.
        let mut p = Fake::new();
        p.versions = SpecVersion::ALL[..6].to_vec();
        let o = call(&mut p, &[("CNI_COMMAND", "VERSION")], "");
        assert_eq!(o.code, 0);
        assert_eq!(
            o.stdout,
            "{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"0.1.0\",\"0.2.0\",\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\"]}\n"
        );
        for (stdin, want) in [
            (r#"{"cniVersion":"0.4.0"}"#, "0.4.0"),
            (r#"{"cniVersion":"9.9.9"}"#, "1.1.0"),
            (r#"{"cniVersion":5}"#, "1.1.0"),
            ("garbage", "1.1.0"),
            ("{}", "1.1.0"),
        ] {
            let o = call(&mut Fake::new(), &[("CNI_COMMAND", "VERSION")], stdin);
            assert_eq!(o.code, 0);
            assert_eq!(o.json()["cniVersion"], json!(want), "{stdin}");
            assert_eq!(o.json()["supportedVersions"].as_array().unwrap().len(), 7);
        }
    }

    #[test]
    fn missing_env() {
        let o = call(&mut Fake::new(), &[("CNI_COMMAND", "ADD")], &conf("1.0.0"));
        assert_eq!(
            o.err(),
            (
                4,
                "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"
                    .into()
            )
        );
        let o = call(&mut Fake::new(), &[("CNI_COMMAND", "DEL")], &conf("1.0.0"));
        assert_eq!(
            o.err(),
            (
                4,
                "required env variables [CNI_CONTAINERID,CNI_IFNAME,CNI_PATH] missing".into()
            )
        );
        let o = call(&mut Fake::new(), &[("CNI_COMMAND", "GC")], &conf("1.1.0"));
        assert_eq!(
            o.err(),
            (4, "required env variables [CNI_PATH] missing".into())
        );
        // Env errors come before stdin is looked at: version is the newest.
        assert_eq!(o.json()["cniVersion"], json!("1.1.0"));
    }

    #[test]
    fn stdin_io_error() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("boom"))
            }
        }
        let map: HashMap<&str, &str> = ADD.into_iter().collect();
        let lookup = |k: &str| map.get(k).map(OsString::from);
        let mut out = Vec::new();
        let o = run(
            &mut Fake::new(),
            &lookup,
            &mut Broken,
            &mut out,
            &mut Vec::new(),
        );
        assert_eq!(o.exit_code, 1);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["code"], json!(5));
    }

    #[test]
    fn config_errors_in_reference_order() {
        let add = vars("ADD", &[]);
        for (stdin, code, msg_start) in [
            ("", 6, "error unmarshall network config"),
            ("{", 6, "error unmarshall network config"),
            ("[]", 6, "error unmarshall network config"),
            (r#"{"name":5}"#, 6, "error unmarshall network config"),
            (r#"{"cniVersion":"1.0.0"}"#, 7, "missing network name"),
            (
                r#"{"cniVersion":"1.0.0","name":"a/b"}"#,
                7,
                "invalid characters found in network name",
            ),
            (
                r#"{"cniVersion":"9.9.9","name":"n"}"#,
                1,
                "incompatible CNI versions",
            ),
            (
                r#"{"cniVersion":"garbage","name":"n"}"#,
                1,
                "incompatible CNI versions",
            ),
            (
                r#"{"cniVersion":1,"name":"n"}"#,
                6,
                // The reference's text, verbatim.
                "decoding version from network config: json: cannot unmarshal number into Go struct field .cniVersion of type string",
            ),
            (
                r#"{"name":5}"#,
                6,
                "error unmarshall network config: json: cannot unmarshal number into Go struct field .name of type string",
            ),
        ] {
            let o = call(&mut Fake::new(), &add, stdin);
            let (c, m) = o.err();
            assert_eq!(c, code, "{stdin}: {m}");
            assert!(m.starts_with(msg_start), "{stdin}: {m}");
        }
        // Network name before container ID (reference: bad name + bad id -> code 7).
        let bad_id = vars("ADD", &[("CNI_CONTAINERID", "-x")]);
        let o = call(
            &mut Fake::new(),
            &bad_id,
            r#"{"cniVersion":"1.0.0","name":"a/b"}"#,
        );
        assert_eq!(o.err().0, 7);
        let v = o.json();
        assert_eq!(v["details"], json!("a/b"));
        assert_eq!(v["cniVersion"], json!("1.0.0"));
        // Container ID then ifname, before the version.
        let o = call(&mut Fake::new(), &bad_id, &conf("9.9.9"));
        assert_eq!(o.err(), (4, "invalid characters in containerID".into()));
        assert_eq!(o.json()["details"], json!("CNI_CONTAINERID=-x"));
        assert_eq!(o.json()["cniVersion"], json!("1.1.0"));
        let bad_if = vars("ADD", &[("CNI_IFNAME", "a:b")]);
        let o = call(&mut Fake::new(), &bad_if, &conf("9.9.9"));
        assert_eq!(
            o.err(),
            (
                4,
                "interface name contains / or : or whitespace characters".into()
            )
        );
        let long_if = vars("DEL", &[("CNI_IFNAME", "0123456789abcdef")]);
        let o = call(&mut Fake::new(), &long_if, &conf("1.0.0"));
        assert_eq!(o.err(), (4, "interface name is too long".into()));
        assert_eq!(o.json()["cniVersion"], json!("1.0.0"));
    }

    #[test]
    fn unsupported_version_lists_plugin_versions() {
        let mut p = Fake::new();
        p.versions = SpecVersion::ALL[..6].to_vec();
        let o = call(&mut p, &vars("ADD", &[]), &conf("1.1.0"));
        assert_eq!(o.err().0, 1);
        assert_eq!(
            o.json()["details"],
            json!(
                r#"config is "1.1.0", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0"]"#
            )
        );
        assert!(p.calls.is_empty());
    }

    #[test]
    fn command_version_rules() {
        for v in ["0.1.0", "0.2.0", "0.3.0", "0.3.1"] {
            let o = call(&mut Fake::new(), &vars("CHECK", &[]), &conf(v));
            assert_eq!(
                o.err(),
                (1, "config version does not allow CHECK".into()),
                "{v}"
            );
            assert_eq!(o.json()["cniVersion"], json!(v));
        }
        // Missing cniVersion is 0.1.0.
        let o = call(&mut Fake::new(), &vars("CHECK", &[]), r#"{"name":"n"}"#);
        assert_eq!(o.err(), (1, "config version does not allow CHECK".into()));
        assert_eq!(o.json()["cniVersion"], json!("0.1.0"));
        // Unparseable version on CHECK: code 6 as the reference.
        let o = call(&mut Fake::new(), &vars("CHECK", &[]), &conf("garbage"));
        assert_eq!(o.err().0, 6);
        let o = call(&mut Fake::new(), &vars("CHECK", &[]), &conf("9.9.9"));
        assert_eq!(o.err().0, 1);
        for cmd in ["GC", "STATUS"] {
            for v in ["0.1.0", "0.4.0", "1.0.0"] {
                let o = call(&mut Fake::new(), &vars(cmd, &[]), &conf(v));
                assert_eq!(
                    o.err(),
                    (1, format!("config version does not allow {cmd}")),
                    "{cmd} {v}"
                );
            }
        }
        let mut p = Fake::new();
        let o = call(&mut p, &vars("CHECK", &[]), &conf("0.4.0"));
        assert_eq!((o.code, o.stdout.as_str()), (0, ""));
        assert_eq!(p.calls[0].0, Command::Check);
    }

    #[test]
    fn cni_args_errors() {
        for (args, msg) in [
            ("garbage", r#"ARGS: invalid pair "garbage""#),
            ("A=b=c", r#"ARGS: invalid pair "A=b=c""#),
            (
                "IgnoreUnknown=yes",
                r#"ARGS: error parsing value of pair "IgnoreUnknown=yes": boolean unmarshal error: invalid input yes"#,
            ),
        ] {
            let o = call(
                &mut Fake::new(),
                &vars("ADD", &[("CNI_ARGS", args)]),
                &conf("0.3.1"),
            );
            assert_eq!(o.err(), (4, msg.to_string()));
            assert_eq!(o.json()["cniVersion"], json!("0.3.1"));
        }
        // Config errors come first, as in the reference (host-local parses CNI_ARGS later).
        let o = call(
            &mut Fake::new(),
            &vars("ADD", &[("CNI_ARGS", "garbage")]),
            &conf("9.9.9"),
        );
        assert_eq!(o.err().0, 1);
        // Valid args reach the plugin.
        let mut p = Fake::new();
        let o = call(
            &mut p,
            &vars("ADD", &[("CNI_ARGS", "IgnoreUnknown=1;FOO=bar")]),
            &conf("0.3.1"),
        );
        assert_eq!(o.code, 0);
    }

    #[test]
    fn add_success_every_version() {
        let mut r = sample();
        r.ips.push(IpConfig {
            address: "fd00::2/64".parse().unwrap(),
            gateway: None,
            interface: None,
        });
        r.routes
            .push(Route::new("0.0.0.0/0".parse().unwrap(), None));
        for v in SpecVersion::ALL {
            let mut p = Fake::new();
            p.result = Some(r.clone());
            let o = call(&mut p, &vars("ADD", &[]), &conf(v.as_str()));
            assert_eq!(o.code, 0, "{}", o.stdout);
            assert_eq!(o.stderr, "");
            assert_eq!(o.json(), r.to_wire(v).unwrap());
            assert!(o.stdout.ends_with('}'));
            assert!(o.stdout.starts_with("{\n    \"cniVersion\": "));
            assert_eq!(p.calls, [(Command::Add, "n".into(), Some("c1".into()))]);
        }
        // Exact bytes of the reference's 0.3.1 output.
        let o = call(&mut Fake::new(), &vars("ADD", &[]), &conf("0.3.1"));
        assert_eq!(
            o.stdout,
            "{\n    \"cniVersion\": \"0.3.1\",\n    \"ips\": [\n        {\n            \"version\": \"4\",\n            \"address\": \"10.9.0.2/24\",\n            \"gateway\": \"10.9.0.1\"\n        }\n    ],\n    \"dns\": {}\n}"
        );
        // Missing cniVersion: a 0.1.0-shaped result (reference).
        let o = call(&mut Fake::new(), &vars("ADD", &[]), r#"{"name":"n"}"#);
        assert_eq!(
            o.json(),
            json!({"cniVersion": "0.1.0", "ip4": {"ip": "10.9.0.2/24", "gateway": "10.9.0.1"}, "dns": {}})
        );
    }

    #[test]
    fn add_conversion_failure_is_an_error() {
        let mut p = Fake::new();
        p.result = Some(CniResult {
            dns: Dns::default(),
            ..CniResult::default()
        });
        let o = call(&mut p, &vars("ADD", &[]), &conf("0.2.0"));
        assert_eq!(o.err().0, 1);
        assert_eq!(o.json()["cniVersion"], json!("0.2.0"));
    }

    #[test]
    fn other_commands_print_nothing() {
        for (cmd, v) in [
            ("DEL", "0.3.1"),
            ("CHECK", "1.0.0"),
            ("GC", "1.1.0"),
            ("STATUS", "1.1.0"),
        ] {
            let mut p = Fake::new();
            let o = call(&mut p, &vars(cmd, &[]), &conf(v));
            assert_eq!((o.code, o.stdout.as_str()), (0, ""), "{cmd}");
            assert_eq!(p.calls.len(), 1);
        }
        // GC and STATUS without container/ifname/netns.
        let mut p = Fake::new();
        let o = call(
            &mut p,
            &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")],
            &conf("1.1.0"),
        );
        assert_eq!(o.code, 0);
        let o = call(&mut p, &[("CNI_COMMAND", "STATUS")], &conf("1.1.0"));
        assert_eq!(o.code, 0);
        assert_eq!(p.calls[1], (Command::Status, "n".into(), None));
        // DEL without a netns.
        let o = call(&mut p, &vars("DEL", &[("CNI_NETNS", "")]), &conf("1.0.0"));
        assert_eq!(o.code, 0, "{}", o.stdout);
    }

    #[test]
    fn plugin_errors_are_printed_with_config_version() {
        let mut p = Fake::new();
        p.fail = Some(CniError::new(50, "exhausted").with_details("range set 0"));
        let o = call(&mut p, &vars("STATUS", &[]), &conf("1.1.0"));
        assert_eq!(o.code, 1);
        assert_eq!(
            o.stdout,
            "{\n    \"cniVersion\": \"1.1.0\",\n    \"code\": 50,\n    \"msg\": \"exhausted\",\n    \"details\": \"range set 0\"\n}"
        );
        p.fail = Some(CniError::new(999, "x"));
        let o = call(&mut p, &vars("ADD", &[]), &conf("0.4.0"));
        assert_eq!(
            o.json(),
            json!({"cniVersion": "0.4.0", "code": 999, "msg": "x"})
        );
    }
}
