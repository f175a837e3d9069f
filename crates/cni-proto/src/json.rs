//! JSON output byte-compatible with Go's `json.MarshalIndent(v, "", "    ")`.

use std::io;

use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};

/// A pretty formatter that also escapes like Go's encoding/json: `<`, `>`, `&`, U+2028 and
/// U+2029 as `\u003c` etc. (Go's HTML-safe default), so output matches the reference's bytes.
struct GoFormatter<'a>(PrettyFormatter<'a>);

impl Formatter for GoFormatter<'_> {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let esc = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            w.write_all(&fragment.as_bytes()[start..i])?;
            w.write_all(esc.as_bytes())?;
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// Pretty JSON with a four-space indent and no trailing newline, like the reference's result
/// and error output (verified: the reference's stdout ends with `}` and no newline).
pub fn to_go_pretty<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        GoFormatter(PrettyFormatter::with_indent(b"    ")),
    );
    // Serializing a serde_json::Value or our plain structs cannot fail.
    if value.serialize(&mut ser).is_err() {
        out.clear();
    }
    out
}

/// Compact JSON with Go's escaping (used for VERSION, which the reference prints with
/// `json.NewEncoder(w).Encode`: compact plus a newline).
pub(crate) fn to_go_compact<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoCompact);
    if value.serialize(&mut ser).is_err() {
        out.clear();
    }
    out
}

struct GoCompact;

impl Formatter for GoCompact {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        GoFormatter(PrettyFormatter::new()).write_string_fragment(w, fragment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_indent_and_escaping() {
        let v = json!({"a": [1, {"b": "x<y>&z\u{2028}"}], "e": {}, "l": []});
        let s = String::from_utf8(to_go_pretty(&v)).unwrap();
        assert_eq!(
            s,
            "{\n    \"a\": [\n        1,\n        {\n            \"b\": \"x\\u003cy\\u003e\\u0026z\\u2028\"\n        }\n    ],\n    \"e\": {},\n    \"l\": []\n}"
        );
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
        let c = String::from_utf8(to_go_compact(&json!({"a": "<", "b": [1, 2]}))).unwrap();
        assert_eq!(c, r#"{"a":"\u003c","b":[1,2]}"#);
    }
}
