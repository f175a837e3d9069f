//! One declaration per Go-rules schema: [`go_struct!`](crate::go_struct) writes the serde struct
//! and its [`Field`] table from a single field list, so the keys serde decodes and the keys
//! [`normalize`](super::normalize) keeps cannot drift apart. A key missing from the table is
//! silently dropped by `normalize` before serde sees it; a key missing from the struct is
//! silently ignored by serde. Either way the document decodes, wrongly, with no error.
//!
//! For the schemas a macro cannot tie (two serde views of one Go type, such as host-local's
//! text-valued route and [`Route`](crate::Route)), [`schema_drift`] and [`fields_at`] let a unit
//! test assert that a struct's serde keys and its table's keys agree.
//!
//! The const helpers [`with_kind`] and [`pick`] derive a variant table (a version's older route
//! shape) from the declared one, checked while compiling.

use std::fmt;

use serde::de::{self, DeserializeOwned, Visitor};

use super::{Field, Kind};

/// Declares a struct decoded with Go's encoding/json rules: the serde struct (deriving
/// `Deserialize`, each field renamed to its JSON key) and, from the same field list, the table
/// `GO_FIELDS: &'static [Field]` in declaration order, for a [`Kind`] to point at.
///
/// Each field carries `#[go("jsonKey", kind)]` after its doc comment and before its other
/// attributes; `kind` is the [`Kind`] of the field's Go type (it is not the Rust type's: an
/// `Option<String>` may be Go's `string` ([`Kind::Scalar`]) or `net.IP` ([`Kind::Whole`])).
/// The container's attributes (doc, other derives, `#[serde(default)]`) pass through, as do the
/// fields' other attributes; a field's own `#[serde(rename)]` is refused by serde as a
/// duplicate, so the key is said once. The calling crate depends on `serde` with `derive`.
///
/// ```
/// use cni_proto::gojson::Kind;
/// cni_proto::go_struct! {
///     /// A Go struct of a `string` keyed "dst" and a `net.IP` keyed "gw".
///     #[derive(Debug, Default)]
///     #[serde(default)]
///     pub struct R {
///         #[go("dst", Kind::Scalar)]
///         pub dst: Option<String>,
///         /// The gateway.
///         #[go("gw", Kind::Whole)]
///         pub gateway: Option<String>,
///     }
/// }
/// static R_KIND: Kind = Kind::Struct { fields: R::GO_FIELDS, nullable: false };
/// let doc = cni_proto::gojson::Doc::parse(br#"{"DST": "a", "Gw": "b"}"#).unwrap();
/// let r: R = cni_proto::gojson::decode(&doc, &R_KIND, "").unwrap();
/// assert_eq!((r.dst.as_deref(), r.gateway.as_deref()), (Some("a"), Some("b")));
/// ```
///
/// A field without its key does not compile:
///
/// ```compile_fail
/// use cni_proto::gojson::Kind;
/// cni_proto::go_struct! {
///     pub struct R {
///         #[go("dst", Kind::Scalar)]
///         pub dst: Option<String>,
///         pub gw: Option<String>,
///     }
/// }
/// ```
///
/// Nor do two fields of one key:
///
/// ```compile_fail
/// use cni_proto::gojson::Kind;
/// cni_proto::go_struct! {
///     pub struct R {
///         #[go("dst", Kind::Scalar)]
///         pub dst: Option<String>,
///         #[go("dst", Kind::Whole)]
///         pub gw: Option<String>,
///     }
/// }
/// ```
///
/// Nor a second name for a field's key:
///
/// ```compile_fail
/// use cni_proto::gojson::Kind;
/// cni_proto::go_struct! {
///     pub struct R {
///         #[go("dst", Kind::Scalar)]
///         #[serde(rename = "Dst")]
///         pub dst: Option<String>,
///     }
/// }
/// ```
#[macro_export]
macro_rules! go_struct {
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                #[go($key:literal, $kind:expr)]
                $(#[$fattr:meta])*
                $fvis:vis $field:ident : $ty:ty
            ),* $(,)?
        }
    ) => {
        // First, so that the container's `#[serde]` attributes follow the derive bringing them.
        #[derive(::serde::Deserialize)]
        $(#[$attr])*
        $vis struct $name {
            $(
                $(#[doc = $doc])*
                #[serde(rename = $key)]
                $(#[$fattr])*
                $fvis $field: $ty,
            )*
        }

        impl $name {
            /// The fields as Go's encoding/json decodes them, in declaration order (the order
            /// in which Go tries a case-insensitive match), with the keys serde decodes.
            $vis const GO_FIELDS: &'static [$crate::gojson::Field] =
                &[$($crate::gojson::field($key, $kind)),*];
        }

        // Two fields of one key: serde would fill only one of them, and Go neither.
        const _: () = $crate::gojson::assert_distinct($name::GO_FIELDS);
    };
}

/// Exact equality of two strings, for const fns (`==` on `str` is not const).
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Fails compilation (or panics) when two fields of `fields` share a key: [`go_struct!`]'s
/// check, since serde would silently decode only one of them.
pub const fn assert_distinct(fields: &[Field]) {
    let mut i = 0;
    while i < fields.len() {
        let mut j = i + 1;
        while j < fields.len() {
            assert!(
                !same(fields[i].name, fields[j].name),
                "two fields of a Go schema have the same key"
            );
            j += 1;
        }
        i += 1;
    }
}

/// A placeholder for building tables in const fns, always overwritten.
const HOLE: Field = Field {
    name: "",
    kind: Kind::Scalar,
};

/// `fields` (of length `N`) with the field keyed `name` decoding as `kind` instead: a variant of
/// a declared table (an `ipam` whose routes are the pre-1.1 routes) that keeps every other field
/// as declared. Panics, at compile time in a static, when no field has that key.
pub const fn with_kind<const N: usize>(fields: &[Field], name: &str, kind: Kind) -> [Field; N] {
    assert!(fields.len() == N, "with_kind: N is not the table's length");
    let mut out = [HOLE; N];
    let mut found = false;
    let mut i = 0;
    while i < N {
        out[i] = fields[i];
        if same(fields[i].name, name) {
            out[i].kind = kind;
            found = true;
        }
        i += 1;
    }
    assert!(found, "with_kind: no field has that key");
    out
}

/// The fields of `fields` keyed `names`, in `names`' order: a narrower view of a declared table
/// (an older version's shape of a type). Panics, at compile time in a static, when a name is not
/// a key of `fields`.
pub const fn pick<const N: usize>(fields: &[Field], names: [&str; N]) -> [Field; N] {
    let mut out = [HOLE; N];
    let mut n = 0;
    while n < N {
        let mut i = 0;
        loop {
            assert!(i < fields.len(), "pick: a name is not a key of the table");
            if same(fields[i].name, names[n]) {
                out[n] = fields[i];
                break;
            }
            i += 1;
        }
        n += 1;
    }
    out
}

/// The table of the struct reached from `kind` by the field keys of `path`, looking through
/// lists and maps (`fields_at(&NET, &["ipam", "ranges"])` is a range's table). None when the
/// path leaves the schema or ends on a value that is not a struct.
pub fn fields_at<'k>(kind: &'k Kind, path: &[&str]) -> Option<&'k [Field]> {
    let mut kind = kind;
    let mut path = path.iter();
    loop {
        match kind {
            Kind::List(elem) | Kind::Map(elem) => kind = elem,
            Kind::Struct { fields, .. } | Kind::Record(fields) => match path.next() {
                None => return Some(fields),
                Some(key) => kind = &fields.iter().find(|f| f.name == *key)?.kind,
            },
            Kind::Scalar | Kind::Whole => return None,
        }
    }
}

/// What serde derive's `Deserialize` of a struct tells the deserializer: the keys it decodes.
/// The probe answers nothing, so decoding stops at once with the keys (or None for a type that
/// is not a plain struct: a flattened struct, a map, a hand-written impl).
struct Probe;

#[derive(Debug)]
struct Probed(Option<&'static [&'static str]>);

impl fmt::Display for Probed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probed for struct keys")
    }
}

impl std::error::Error for Probed {}

impl de::Error for Probed {
    fn custom<T: fmt::Display>(_: T) -> Probed {
        Probed(None)
    }
}

impl<'de> de::Deserializer<'de> for Probe {
    type Error = Probed;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        Err(Probed(None))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Probed> {
        Err(Probed(Some(fields)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The JSON keys serde derive's `Deserialize` of `T` decodes, in declaration order; None when
/// `T` is not a plain derived struct.
pub fn serde_keys<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    match T::deserialize(Probe) {
        Err(Probed(keys)) => keys,
        Ok(_) => None,
    }
}

/// How `T`'s serde keys and the table `fields` disagree, for a test to fail with; None when they
/// are the same keys in the same order. Keys only one side has are named first (the drift that
/// loses a field's value); a difference of order alone comes after (Go tries fields in the
/// table's order, so both are kept in one order to be read side by side).
pub fn schema_drift<T: DeserializeOwned>(fields: &[Field]) -> Option<String> {
    let name = std::any::type_name::<T>();
    let Some(serde) = serde_keys::<T>() else {
        return Some(format!("{name} is not a plain serde-derived struct"));
    };
    let table: Vec<&str> = fields.iter().map(|f| f.name).collect();
    let only = |a: &[&str], b: &[&str]| -> Vec<String> {
        a.iter()
            .filter(|k| !b.contains(k))
            .map(|k| format!("{k:?}"))
            .collect()
    };
    let mut out = Vec::new();
    let serde_only = only(serde, &table);
    if !serde_only.is_empty() {
        out.push(format!(
            "serde decodes {} but the Kind table has no such field (normalize drops it)",
            serde_only.join(", ")
        ));
    }
    let table_only = only(&table, serde);
    if !table_only.is_empty() {
        out.push(format!(
            "the Kind table has {} but serde decodes no such field (ignored)",
            table_only.join(", ")
        ));
    }
    if out.is_empty() && serde != table.as_slice() {
        out.push(format!(
            "serde's order {serde:?} is not the table's {table:?}"
        ));
    }
    (!out.is_empty()).then(|| format!("{name}: {}", out.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::super::{decode, field, Doc};
    use super::*;
    use serde::Deserialize;

    static SCALAR: Kind = Kind::Scalar;

    crate::go_struct! {
        /// The macro's keys win over a container's rename_all.
        #[derive(Debug, Default, PartialEq)]
        #[serde(default, rename_all = "UPPERCASE")]
        struct Declared {
            /// A doc comment before the key.
            #[go("aKey", Kind::Scalar)]
            a: Option<String>,
            #[go("b.c/d", Kind::List(&SCALAR))]
            #[serde(deserialize_with = "Option::deserialize")]
            b: Option<Vec<String>>,
            #[go("ip", Kind::Whole)]
            pub(crate) ip: Option<String>,
        }
    }
    static DECLARED: Kind = Kind::Struct {
        fields: Declared::GO_FIELDS,
        nullable: false,
    };

    #[test]
    fn the_macro_writes_one_key_list_for_both() {
        assert_eq!(serde_keys::<Declared>(), Some(&["aKey", "b.c/d", "ip"][..]));
        let table: Vec<_> = Declared::GO_FIELDS.iter().map(|f| f.name).collect();
        assert_eq!(table, ["aKey", "b.c/d", "ip"]);
        assert!(matches!(
            Declared::GO_FIELDS[1].kind,
            Kind::List(Kind::Scalar)
        ));
        assert_eq!(schema_drift::<Declared>(Declared::GO_FIELDS), None);
        let doc = Doc::parse(br#"{"AKEY": "x", "B.C/D": ["y"], "ip": "z", "ip": null}"#).unwrap();
        let d: Declared = decode(&doc, &DECLARED, "").unwrap();
        assert_eq!(
            d,
            Declared {
                a: Some("x".into()),
                b: Some(vec!["y".into()]),
                ip: None,
            }
        );
    }

    /// The drift the macro rules out, written by hand: serde decodes `newKey`, the table lacks
    /// it. Decoding succeeds and loses the value; only the drift check says so.
    #[derive(Deserialize, Debug, Default)]
    #[serde(default)]
    struct Drifted {
        a: Option<String>,
        #[serde(rename = "newKey")]
        new_key: Option<String>,
    }
    static DRIFTED_FIELDS: [Field; 1] = [field("a", Kind::Scalar)];
    static DRIFTED: Kind = Kind::Struct {
        fields: &DRIFTED_FIELDS,
        nullable: false,
    };

    #[test]
    fn drift_is_silent_in_decoding_and_found_by_the_check() {
        let doc = Doc::parse(br#"{"a": "1", "newKey": "2"}"#).unwrap();
        let d: Drifted = decode(&doc, &DRIFTED, "").unwrap();
        assert_eq!((d.a.as_deref(), d.new_key), (Some("1"), None));
        let e = schema_drift::<Drifted>(&DRIFTED_FIELDS).unwrap();
        assert!(
            e.contains("Drifted") && e.contains(r#"serde decodes "newKey" but the Kind table"#),
            "{e}"
        );
        // The other way: a key the table keeps and serde ignores.
        let table = [
            field("a", Kind::Scalar),
            field("newKey", Kind::Scalar),
            field("gone", Kind::Scalar),
        ];
        let e = schema_drift::<Drifted>(&table).unwrap();
        assert!(
            e.contains(r#"the Kind table has "gone" but serde decodes no such field"#),
            "{e}"
        );
        assert!(!e.contains("serde decodes \"newKey\""), "{e}");
        // The same keys in another order.
        let table = [field("newKey", Kind::Scalar), field("a", Kind::Scalar)];
        let e = schema_drift::<Drifted>(&table).unwrap();
        assert!(e.contains("order"), "{e}");
        let table = [field("a", Kind::Scalar), field("newKey", Kind::Scalar)];
        assert_eq!(schema_drift::<Drifted>(&table), None);
    }

    #[test]
    fn the_check_refuses_what_is_not_a_plain_struct() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Flat {
            #[serde(flatten)]
            inner: Drifted,
        }
        assert_eq!(serde_keys::<Flat>(), None);
        assert_eq!(
            serde_keys::<std::collections::BTreeMap<String, String>>(),
            None
        );
        assert_eq!(serde_keys::<String>(), None);
        let e = schema_drift::<Flat>(&DRIFTED_FIELDS).unwrap();
        assert!(e.contains("not a plain serde-derived struct"), "{e}");
    }

    static TABLE: [Field; 3] = [
        field("dst", Kind::Whole),
        field("gw", Kind::Whole),
        field("mtu", Kind::Scalar),
    ];
    static NARROW: [Field; 2] = pick(&TABLE, ["gw", "dst"]);
    static WIDE: Kind = Kind::List(&SCALAR);
    static CHANGED: [Field; 3] = with_kind(&TABLE, "gw", Kind::Map(&WIDE));

    #[test]
    fn variant_tables_keep_the_declared_fields() {
        let names = |t: &[Field]| t.iter().map(|f| f.name).collect::<Vec<_>>();
        assert_eq!(names(&NARROW), ["gw", "dst"]);
        assert!(matches!(NARROW[0].kind, Kind::Whole));
        assert_eq!(names(&CHANGED), ["dst", "gw", "mtu"]);
        assert!(matches!(CHANGED[0].kind, Kind::Whole));
        assert!(matches!(
            CHANGED[1].kind,
            Kind::Map(Kind::List(Kind::Scalar))
        ));
        assert!(matches!(CHANGED[2].kind, Kind::Scalar));
    }

    #[test]
    #[should_panic(expected = "pick: a name is not a key of the table")]
    fn pick_refuses_an_unknown_key() {
        let _ = pick(&TABLE, ["dst", "advmss"]);
    }

    #[test]
    #[should_panic(expected = "with_kind: no field has that key")]
    fn with_kind_refuses_an_unknown_key() {
        let _: [Field; 3] = with_kind(&TABLE, "Gw", Kind::Scalar);
    }

    #[test]
    #[should_panic(expected = "with_kind: N is not the table's length")]
    fn with_kind_keeps_the_length() {
        let _: [Field; 2] = with_kind(&TABLE, "gw", Kind::Scalar);
    }

    #[test]
    fn distinct_keys_pass() {
        assert_distinct(&TABLE);
        // Keys that fold together are distinct fields to Go (the exact one wins).
        assert_distinct(&[field("ab", Kind::Scalar), field("AB", Kind::Scalar)]);
    }

    #[test]
    #[should_panic(expected = "two fields of a Go schema have the same key")]
    fn a_repeated_key_is_refused() {
        assert_distinct(&[
            field("a", Kind::Scalar),
            field("b", Kind::Scalar),
            field("a", Kind::Whole),
        ]);
    }

    #[test]
    fn fields_at_walks_lists_and_maps() {
        static INNER: [Field; 1] = [field("x", Kind::Scalar)];
        static INNER_KIND: Kind = Kind::Record(&INNER);
        static LIST: Kind = Kind::List(&INNER_KIND);
        static MAP: Kind = Kind::Map(&LIST);
        static OUTER: [Field; 2] = [field("m", MAP), field("s", Kind::Scalar)];
        static ROOT: Kind = Kind::Struct {
            fields: &OUTER,
            nullable: true,
        };
        let at = |p: &[&str]| fields_at(&ROOT, p).map(|t| t.iter().map(|f| f.name).collect());
        assert_eq!(at(&[]), Some(vec!["m", "s"]));
        assert_eq!(at(&["m"]), Some(vec!["x"]));
        assert_eq!(at(&["s"]), None);
        assert_eq!(at(&["m", "x"]), None);
        assert_eq!(at(&["M"]), None);
        assert_eq!(fields_at(&LIST, &[]).map(<[Field]>::len), Some(1));
    }
}
