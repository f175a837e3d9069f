//! The content of a reservation file, as both plugins write it:
//! `<containerID>\r\n<ifname>`, or the container ID alone (old versions of
//! the reference). Whitespace around it is ignored, as the reference's
//! `strings.TrimSpace` does.

use crate::store::{truncate, Owner};

/// The owner a reservation file's content names; Err says why it names none.
pub fn parse(content: &[u8]) -> Result<Owner, String> {
    let Ok(text) = std::str::from_utf8(content) else {
        return Err("not UTF-8".into());
    };
    let t = text.trim();
    if t.is_empty() {
        return Err("empty".into());
    }
    let (id, ifname) = match t.split_once("\r\n") {
        Some((id, ifname)) => (id, Some(ifname)),
        None => (t, None),
    };
    Owner::from_parts(id, ifname).map_err(|_| format!("unparseable content {:?}", truncate(t)))
}

/// The content the reference writes for `owner` (None: a damaged owner has none).
pub fn encode(owner: &Owner) -> Option<String> {
    match owner {
        Owner::Attachment { id, ifname } => Some(format!("{id}\r\n{ifname}")),
        Owner::Legacy { id } => Some(id.clone()),
        Owner::Damaged => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_and_damage() {
        let a = Owner::Attachment {
            id: "c1".into(),
            ifname: "eth0".into(),
        };
        assert_eq!(parse(b"c1\r\neth0"), Ok(a.clone()));
        assert_eq!(parse(b"  c1\r\neth0\n"), Ok(a.clone()));
        assert_eq!(parse(b"c1"), Ok(Owner::Legacy { id: "c1".into() }));
        assert_eq!(parse(b""), Err("empty".into()));
        assert_eq!(parse(b"\xff"), Err("not UTF-8".into()));
        assert!(parse(b"c1\r\na/b").unwrap_err().contains("unparseable"));
        assert_eq!(encode(&a).as_deref(), Some("c1\r\neth0"));
        assert_eq!(parse(encode(&a).unwrap().as_bytes()), Ok(a));
        assert_eq!(encode(&Owner::Damaged), None);
    }
}
