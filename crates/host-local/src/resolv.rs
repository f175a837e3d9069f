//! resolv.conf into the result's `dns`, as the reference reads it:
//! `nameserver`, `domain`, `search` and `options` lines; `#` and `;` start
//! comments; lines with fewer than two fields are ignored.

use std::path::Path;

use cni_proto::Dns;

use crate::error::{Error, Result};

/// A resolv.conf larger than this is not a resolv.conf.
pub const MAX_RESOLV_CONF: u64 = 1 << 20;

/// Parses resolv.conf text.
pub fn parse(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 2 {
            continue;
        }
        match fields[0] {
            "nameserver" => dns.nameservers.push(fields[1].to_string()),
            "domain" => dns.domain = Some(fields[1].to_string()),
            "search" => dns.search.extend(fields[1..].iter().map(|s| s.to_string())),
            "options" => dns
                .options
                .extend(fields[1..].iter().map(|s| s.to_string())),
            _ => {}
        }
    }
    dns
}

/// Reads and parses the file at `path`.
pub fn load(path: &Path) -> Result<Dns> {
    let err = |op| {
        move |source| Error::ResolvConf {
            op,
            path: path.to_path_buf(),
            source,
        }
    };
    let f = std::fs::File::open(path).map_err(err("open"))?;
    let buf = cni_proto::read_bounded(f, MAX_RESOLV_CONF, "file").map_err(err("read"))?;
    Ok(parse(&String::from_utf8_lossy(&buf)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_of_line() {
        let d = parse(
            "# comment\n; other comment\nnameserver 1.1.1.1\nnameserver  2001:db8::53 \ndomain example.com\nsearch a.example b.example\noptions ndots:5 timeout:1\nsortlist x\nnameserver\n",
        );
        assert_eq!(d.nameservers, ["1.1.1.1", "2001:db8::53"]);
        assert_eq!(d.domain.as_deref(), Some("example.com"));
        assert_eq!(d.search, ["a.example", "b.example"]);
        assert_eq!(d.options, ["ndots:5", "timeout:1"]);
    }

    #[test]
    fn missing_file_names_path() {
        // The reference's wording (Go's PathError) first.
        let e = load(Path::new("/nonexistent/resolv.conf")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("open /nonexistent/resolv.conf: no such file or directory"),
            "{e}"
        );
        let e = load(Path::new("/")).unwrap_err();
        assert!(e.to_string().starts_with("read /: is a directory"), "{e}");
    }
}
