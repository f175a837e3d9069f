//! Go's encoding/json object rules, for decoding documents the way the reference does, while the
//! structures stay typed serde structs.
//!
//! Go decodes each key of an object into the struct field it names: the field whose name matches
//! exactly, or else the first field (in declaration order) whose name matches case-insensitively
//! under Go's folding. Keys that name no field are ignored. When a document repeats a field the
//! later key is decoded *into* what the earlier one left: a plain value is replaced, but a struct
//! (or pointer to struct) and a map are merged key by key, and a list reuses the earlier list's
//! elements (merging struct elements) and takes the new length. `null` sets a pointer, slice, map
//! or interface field to its zero value and leaves a string, number, bool or plain struct field
//! as it was.
//!
//! [`normalize`] applies these rules with a [`Kind`] schema describing the Go types and returns an
//! equivalent document where every object has exactly its fields' canonical names, each once, and
//! no `null` for a zero value (the key is left out). A `#[serde(default)]` struct then decodes it
//! with serde derive; [`decode`] does both and names the field path of a type error
//! (`ipam.ranges[0][1].rangeStart`).
//!
//! Documents are read as [`Doc`], which keeps repeated keys (serde_json's `Value` keeps only the
//! last). In a list, a zero element (a `null` that resets) stays `null` for the typed decoding to
//! accept or refuse; a `null` struct element becomes an empty object (Go's zero struct).
//!
//! A schema is declared once, with [`go_struct!`](crate::go_struct), which writes both the serde
//! struct and its [`Field`] table (see [`schema`] for why and for the checks of the rest).
//!
//! Measured with Go 1.19 (crates/cni-proto/tests/go-json/main.go, `go run main.go`); the tables in
//! the tests below are its output.
//!
//! Over 600 lines only by its unit tests (from `mod tests` on, about 310 lines): the measured
//! tables of Go's decoding.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub mod schema;
pub use schema::{assert_distinct, fields_at, pick, schema_drift, serde_keys, with_kind};

/// A struct field: its JSON name and the Go type's decoding behaviour. Copy, for the const
/// helpers ([`pick`], [`with_kind`]) that build a variant table from a declared one.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
}

/// A [`Field`], short enough for the schema tables of statics (`field("dst", Kind::Whole)`).
pub const fn field(name: &'static str, kind: Kind) -> Field {
    Field { name, kind }
}

/// How Go decodes a value of a type.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A string, number or bool: replaced by a later key; `null` leaves it as it was.
    Scalar,
    /// A value Go decodes whole (net.IP, a type with its own UnmarshalJSON, interface{}):
    /// replaced by a later key; `null` resets it.
    Whole,
    /// A struct (fields in declaration order); `nullable` for a pointer to one, which `null`
    /// resets. A later key merges into the earlier value.
    Struct {
        fields: &'static [Field],
        nullable: bool,
    },
    /// A struct with its own UnmarshalJSON that decodes into a fresh value (types.Route): keys
    /// fold as for a struct, but a later key replaces the earlier value; `null` resets it.
    Record(&'static [Field]),
    /// A slice: `null` resets it; a later list is decoded into the earlier one's elements.
    List(&'static Kind),
    /// A `map[string]T`: keys match exactly; a later object merges; `null` resets it.
    Map(&'static Kind),
}

const CASE_MASK: u8 = !0x20;
const KELVIN: char = '\u{212A}';
const LONG_S: char = '\u{017F}';

/// Go's `foldFunc(name)(name, key)`: does `key` name the field `name` case-insensitively?
///
/// For an ASCII name (all of ours) Go compares ASCII letters without case, other bytes exactly,
/// and lets KELVIN SIGN stand for `k` and LATIN SMALL LETTER LONG S for `s`. For other names it
/// uses `bytes.EqualFold` (Unicode simple folding), approximated here with single-character case
/// mappings.
pub fn fold_eq(name: &str, key: &str) -> bool {
    if name.is_ascii() {
        let mut k = key.chars();
        for nb in name.bytes() {
            let Some(kc) = k.next() else { return false };
            let ok = match kc {
                KELVIN => nb & CASE_MASK == b'K',
                LONG_S => nb & CASE_MASK == b'S',
                c if c.is_ascii() => {
                    let kb = c as u8;
                    kb == nb || (nb.is_ascii_alphabetic() && kb & CASE_MASK == nb & CASE_MASK)
                }
                _ => false,
            };
            if !ok {
                return false;
            }
        }
        return k.next().is_none();
    }
    let (mut a, mut b) = (name.chars(), key.chars());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if simple_fold_eq(x, y) => {}
            _ => return false,
        }
    }
}

fn simple_fold_eq(x: char, y: char) -> bool {
    fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
        let c = it.next()?;
        it.next().is_none().then_some(c)
    }
    x == y
        || single(x.to_lowercase()).is_some_and(|l| Some(l) == single(y.to_lowercase()))
        || single(x.to_uppercase()).is_some_and(|u| Some(u) == single(y.to_uppercase()))
}

/// The field a key decodes into: an exact match, else the first field matching under folding.
pub fn find_field<'f>(fields: &'f [Field], key: &str) -> Option<&'f Field> {
    fields
        .iter()
        .find(|f| f.name == key)
        .or_else(|| fields.iter().find(|f| fold_eq(f.name, key)))
}

/// A JSON document as written: objects keep every key, duplicates included, in order (serde_json's
/// `Value` keeps only the last of duplicate keys, which loses Go's merging of repeated objects).
#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Doc>),
    Object(Vec<(String, Doc)>),
}

impl Doc {
    /// Parse JSON text, keeping duplicate keys.
    pub fn parse(bytes: &[u8]) -> Result<Doc, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The document as a serde_json value (the last of duplicate keys wins).
    pub fn to_value(&self) -> Value {
        match self {
            Doc::Null => Value::Null,
            Doc::Bool(b) => Value::Bool(*b),
            Doc::Number(n) => Value::Number(n.clone()),
            Doc::String(s) => Value::String(s.clone()),
            Doc::Array(a) => Value::Array(a.iter().map(Doc::to_value).collect()),
            Doc::Object(o) => {
                Value::Object(o.iter().map(|(k, v)| (k.clone(), v.to_value())).collect())
            }
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Doc::Null)
    }

    /// The value a field of this object holds after Go's decoding, not merging repeated objects:
    /// the last key naming it wins; `null` resets it when `kind` is not [`Kind::Scalar`] and is
    /// skipped when it is. None for a non-object or a zero value.
    pub fn field(&self, name: &str, kind: Kind) -> Option<&Doc> {
        let Doc::Object(o) = self else { return None };
        let mut found = None;
        for (k, v) in o {
            if fold_eq(name, k) {
                if !v.is_null() {
                    found = Some(v);
                } else if !matches!(kind, Kind::Scalar) {
                    found = None;
                }
            }
        }
        found
    }
}

impl From<&Value> for Doc {
    fn from(v: &Value) -> Doc {
        match v {
            Value::Null => Doc::Null,
            Value::Bool(b) => Doc::Bool(*b),
            Value::Number(n) => Doc::Number(n.clone()),
            Value::String(s) => Doc::String(s.clone()),
            Value::Array(a) => Doc::Array(a.iter().map(Doc::from).collect()),
            Value::Object(o) => {
                Doc::Object(o.iter().map(|(k, v)| (k.clone(), Doc::from(v))).collect())
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Doc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Doc, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Doc;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Doc, E> {
                Ok(Doc::Null)
            }
            fn visit_none<E>(self) -> Result<Doc, E> {
                Ok(Doc::Null)
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Doc, D::Error> {
                serde::Deserialize::deserialize(d)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Doc, E> {
                Ok(Doc::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Doc, E> {
                Ok(Doc::Number(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Doc, E> {
                Ok(Doc::Number(n.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Doc, E> {
                serde_json::Number::from_f64(n)
                    .map(Doc::Number)
                    .ok_or_else(|| E::custom("not a finite number"))
            }
            fn visit_str<E>(self, s: &str) -> Result<Doc, E> {
                Ok(Doc::String(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Doc, E> {
                Ok(Doc::String(s))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Doc, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = a.next_element()? {
                    out.push(x);
                }
                Ok(Doc::Array(out))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Doc, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = a.next_entry::<String, Doc>()? {
                    out.push((k, v));
                }
                Ok(Doc::Object(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Decode `v` as Go would into a value of `kind` that currently holds `prev` (`None`: the zero
/// value). Returns the new value (`None`: the zero value). Values of the wrong JSON type are
/// passed through for the typed decoding to report.
pub fn decode_into(prev: Option<Value>, v: &Doc, kind: &Kind) -> Option<Value> {
    match (kind, v) {
        (Kind::Scalar, Doc::Null) => prev,
        (
            Kind::Struct {
                nullable: false, ..
            },
            Doc::Null,
        ) => Some(prev.unwrap_or_else(|| Value::Object(Map::new()))),
        (_, Doc::Null) => None,
        (Kind::Record(fields), Doc::Object(_)) => decode_into(
            None,
            v,
            &Kind::Struct {
                fields,
                nullable: true,
            },
        ),
        (Kind::Struct { fields, .. }, Doc::Object(obj)) => {
            let mut out = match prev {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            for (key, val) in obj {
                let Some(f) = find_field(fields, key) else {
                    continue;
                };
                if let Some(new) = decode_into(out.remove(f.name), val, &f.kind) {
                    out.insert(f.name.to_owned(), new);
                }
            }
            Some(Value::Object(out))
        }
        (Kind::Map(elem), Doc::Object(obj)) => {
            let mut out = match prev {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            for (key, val) in obj {
                let new = decode_into(out.remove(key), val, elem).unwrap_or(Value::Null);
                out.insert(key.clone(), new);
            }
            Some(Value::Object(out))
        }
        (Kind::List(elem), Doc::Array(items)) => {
            let mut old = match prev {
                Some(Value::Array(a)) => a.into_iter(),
                _ => Vec::new().into_iter(),
            };
            let list = items
                .iter()
                .map(|item| {
                    let p = old.next().filter(|p| !p.is_null());
                    // A zero element of a slice is Go's zero value; `null` marks it.
                    decode_into(p, item, elem).unwrap_or(Value::Null)
                })
                .collect();
            Some(Value::Array(list))
        }
        _ => Some(v.to_value()),
    }
}

/// `v` decoded as a document of `kind` under Go's rules (see the module text).
pub fn normalize(v: &Doc, kind: &Kind) -> Value {
    decode_into(None, v, kind).unwrap_or(Value::Null)
}

/// A typed decoding failure: where, and what serde said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct DecodeError {
    /// The field path, e.g. `ipam.ranges[0][1].rangeStart` (empty for the root).
    pub path: String,
    pub reason: String,
}

/// Normalize `v` against `kind`, then decode it into `T`. `root` prefixes the field path of an
/// error (e.g. "ipam").
pub fn decode<T: DeserializeOwned>(v: &Doc, kind: &Kind, root: &str) -> Result<T, DecodeError> {
    let norm = normalize(v, kind);
    serde_path_to_error::deserialize::<_, T>(&norm).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (root.is_empty(), inner.as_str()) {
            (_, ".") => root.to_owned(),
            (true, p) => p.to_owned(),
            (false, p) if p.starts_with('[') => format!("{root}{p}"),
            (false, p) => format!("{root}.{p}"),
        };
        DecodeError {
            path,
            reason: e.into_inner().to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    /// `fold "name" "key" matched` as printed by tests/go-json/main.go under Go 1.19.
    const GO_FOLD: &[(&str, &str, bool)] = &[
        ("subnet", "subnet", true),
        ("subnet", "Subnet", true),
        ("subnet", "SUBNET", true),
        ("subnet", "\u{17F}ubnet", true),
        ("subnet", "SUBNEt", true),
        ("subnet", "subnet ", false),
        ("subnet", "sub_net", false),
        ("rangeStart", "RANGESTART", true),
        ("rangeStart", "rangestart", true),
        ("rangeStart", "range_start", false),
        ("rangeStart", "range\u{17F}tart", true),
        ("gw", "GW", true),
        ("gw", "Gw", true),
        ("dst", "DST", true),
        ("dst", "d\u{17F}t", true),
        ("kind", "\u{212A}ind", true),
        ("kind", "KIND", true),
        ("ipam", "IPAM", true),
        ("ipam", "\u{131}pam", false),
        ("ipam", "\u{130}PAM", false),
        ("cni", "CNI", true),
        ("ips", "IPS", true),
        ("ips", "ip\u{17F}", true),
        ("containerID", "containerid", true),
        ("containerID", "CONTAINERID", true),
        (
            "cni.dev/valid-attachments",
            "CNI.DEV/VALID-ATTACHMENTS",
            true,
        ),
        (
            "cni.dev/valid-attachments",
            "cni.dev/valid_attachments",
            false,
        ),
        ("a-b", "a_b", false),
        ("a.b", "A.B", true),
        ("\u{e9}", "\u{c9}", true),
        ("x1", "X1", true),
        ("x1", "x!", false),
        ("x@", "x`", false),
        ("ab", "a\u{212A}", false),
        ("stra\u{df}e", "STRASSE", false),
        ("\u{3c3}", "\u{3a3}", true),
        ("\u{3c3}", "\u{3c2}", true),
        ("dns", "DNS", true),
        ("dataDir", "DATADIR", true),
        ("resolvConf", "resolvconf", true),
    ];

    #[test]
    fn folding_matches_go() {
        for &(name, key, want) in GO_FOLD {
            assert_eq!(fold_eq(name, key), want, "{name:?} {key:?}");
        }
    }

    static INNER: [Field; 2] = [
        Field {
            name: "a",
            kind: Kind::Scalar,
        },
        Field {
            name: "b",
            kind: Kind::Scalar,
        },
    ];
    static INNER_KIND: Kind = Kind::Struct {
        fields: &INNER,
        nullable: false,
    };
    static SCALAR: Kind = Kind::Scalar;
    /// The Go program's `Doc` struct.
    static DOC: [Field; 10] = [
        Field {
            name: "s",
            kind: Kind::Scalar,
        },
        Field {
            name: "l",
            kind: Kind::List(&SCALAR),
        },
        Field {
            name: "p",
            kind: Kind::Struct {
                fields: &INNER,
                nullable: true,
            },
        },
        Field {
            name: "i",
            kind: INNER_KIND,
        },
        Field {
            name: "li",
            kind: Kind::List(&INNER_KIND),
        },
        Field {
            name: "n",
            kind: Kind::Scalar,
        },
        Field {
            name: "ab",
            kind: Kind::Scalar,
        },
        Field {
            name: "AB",
            kind: Kind::Scalar,
        },
        Field {
            name: "m",
            kind: Kind::Map(&SCALAR),
        },
        Field {
            name: "any",
            kind: Kind::Whole,
        },
    ];
    static DOC_KIND: Kind = Kind::Struct {
        fields: &DOC,
        nullable: false,
    };

    #[derive(Deserialize, Default, Debug, PartialEq)]
    #[serde(default)]
    struct Inner {
        a: String,
        b: String,
    }

    #[derive(Deserialize, Default, Debug, PartialEq)]
    #[serde(default)]
    struct GoDoc {
        s: String,
        l: Option<Vec<String>>,
        p: Option<Inner>,
        i: Inner,
        li: Option<Vec<Inner>>,
        n: i64,
        ab: String,
        #[serde(rename = "AB")]
        ab_upper: String,
        m: Option<std::collections::BTreeMap<String, String>>,
        any: Option<Value>,
    }

    /// `doc IN -> OUT err=E` lines of tests/go-json/main.go, OUT re-marshalled by Go with the zero
    /// values written out; compared here on the fields the document touched.
    #[test]
    fn documents_match_go() {
        let go: &[(&str, Value)] = &[
            (r#"{"s":"x","s":"y"}"#, json!({"s": "y"})),
            (r#"{"s":"x","S":"y"}"#, json!({"s": "y"})),
            (r#"{"S":"x","s":"y"}"#, json!({"s": "y"})),
            (r#"{"s":"x","s":null}"#, json!({"s": "x"})),
            (r#"{"s":null}"#, json!({"s": ""})),
            (r#"{"l":["a"],"l":null}"#, json!({"l": null})),
            (r#"{"l":["a","b"],"l":["c"]}"#, json!({"l": ["c"]})),
            (
                r#"{"p":{"a":"1"},"P":{"b":"2"}}"#,
                json!({"p": {"a": "1", "b": "2"}}),
            ),
            (r#"{"p":{"a":"1"},"p":null}"#, json!({"p": null})),
            (
                r#"{"i":{"a":"1"},"i":{"b":"2"}}"#,
                json!({"i": {"a": "1", "b": "2"}}),
            ),
            (
                r#"{"i":{"a":"1"},"i":null}"#,
                json!({"i": {"a": "1", "b": ""}}),
            ),
            (
                r#"{"li":[{"a":"1"},{"a":"2"}],"li":[{"b":"3"}]}"#,
                json!({"li": [{"a": "1", "b": "3"}]}),
            ),
            (r#"{"n":1,"n":null}"#, json!({"n": 1})),
            (r#"{"Ab":"x"}"#, json!({"ab": "x", "AB": ""})),
            (r#"{"aB":"x"}"#, json!({"ab": "x", "AB": ""})),
            (r#"{"AB":"x"}"#, json!({"ab": "", "AB": "x"})),
            (r#"{"ab":"x"}"#, json!({"ab": "x", "AB": ""})),
            (
                r#"{"m":{"a":"1"},"m":{"b":"2"}}"#,
                json!({"m": {"a": "1", "b": "2"}}),
            ),
            (
                r#"{"any":{"a":"1"},"any":{"b":"2"}}"#,
                json!({"any": {"b": "2"}}),
            ),
            (r#"{"li":[null]}"#, json!({"li": [{"a": "", "b": ""}]})),
        ];
        for (doc, want) in go {
            let raw = Doc::parse(doc.as_bytes()).unwrap();
            let got: GoDoc = decode(&raw, &DOC_KIND, "").unwrap_or_else(|e| panic!("{doc}: {e}"));
            let got = json!({
                "s": got.s, "l": got.l, "p": got.p.map(|p| json!({"a": p.a, "b": p.b})),
                "i": {"a": got.i.a, "b": got.i.b}, "n": got.n, "ab": got.ab, "AB": got.ab_upper,
                "m": got.m, "any": got.any,
                "li": got.li.map(|l| l.into_iter().map(|i| json!({"a": i.a, "b": i.b})).collect::<Vec<_>>()),
            });
            for (k, v) in want.as_object().unwrap() {
                assert_eq!(&got[k], v, "{doc}: field {k}");
            }
        }
    }

    #[test]
    fn serde_json_keeps_the_last_duplicate_and_order_of_first() {
        // serde_json's Value (preserve_order) keeps the last value of a duplicate key, at the
        // first key's position; normalize sees only that, which is what Go's last-wins gives for
        // plain values, but loses Go's merging of duplicate objects. decode() therefore works
        // on `Doc`, which keeps them.
        let text = r#"{"a":{"x":1},"b":2,"a":{"y":2}}"#;
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(v.to_string(), r#"{"a":{"y":2},"b":2}"#);
        let d = Doc::parse(text.as_bytes()).unwrap();
        let Doc::Object(o) = &d else { panic!() };
        assert_eq!(o.len(), 3);
        // serde derive refuses a duplicate field outright; decode() never shows it one.
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct A {
            a: u8,
        }
        let e = serde_json::from_str::<A>(r#"{"a":1,"a":2}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate field"), "{e}");
    }

    #[test]
    fn type_errors_name_the_path() {
        let raw = Doc::from(&json!({"li": [{"a": "1"}, {"b": 5}]}));
        let e = decode::<GoDoc>(&raw, &DOC_KIND, "root").unwrap_err();
        assert_eq!(e.path, "root.li[1].b");
        assert!(e.reason.contains("expected a string"), "{}", e.reason);
        let e = decode::<GoDoc>(&(&json!({"n": "5"})).into(), &DOC_KIND, "").unwrap_err();
        assert_eq!(e.path, "n");
    }

    fn arb_doc() -> impl proptest::strategy::Strategy<Value = Doc> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Doc::Null),
            any::<bool>().prop_map(Doc::Bool),
            (0u8..3).prop_map(|n| Doc::Number(n.into())),
            "[ab]{0,2}".prop_map(Doc::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Doc::Array),
                proptest::collection::vec(
                    (
                        prop_oneof![
                            Just("s"),
                            Just("S"),
                            Just("l"),
                            Just("p"),
                            Just("P"),
                            Just("i"),
                            Just("li"),
                            Just("n"),
                            Just("ab"),
                            Just("Ab"),
                            Just("AB"),
                            Just("m"),
                            Just("any"),
                            Just("a"),
                            Just("b"),
                            Just("zz"),
                        ]
                        .prop_map(str::to_owned),
                        inner,
                    ),
                    0..5
                )
                .prop_map(Doc::Object),
            ]
        })
    }

    proptest::proptest! {
        /// Decoding the normalized document again changes nothing: it holds each field once,
        /// under its canonical name, and no zero-value nulls.
        #[test]
        fn normalize_is_idempotent(d in arb_doc()) {
            let once = normalize(&d, &DOC_KIND);
            let twice = normalize(&Doc::from(&once), &DOC_KIND);
            proptest::prop_assert_eq!(once, twice);
        }
    }

    #[test]
    fn field_lookup() {
        let p = |s: &str| Doc::parse(s.as_bytes()).unwrap();
        let o = p(r#"{"NAME": "a", "name": null, "Name": "b"}"#);
        assert_eq!(
            o.field("name", Kind::Scalar),
            Some(&Doc::String("b".into()))
        );
        let o = p(r#"{"name": "a", "NAME": null}"#);
        assert_eq!(
            o.field("name", Kind::Scalar),
            Some(&Doc::String("a".into()))
        );
        assert_eq!(o.field("name", Kind::Whole), None);
        assert_eq!(p(r#"{"namex": "a"}"#).field("name", Kind::Scalar), None);
    }
}
