//! Reading untrusted input with a size bound.

use std::io::{self, Read};

/// Read all of `r`, failing with `InvalidData` ("{what} larger than {max} bytes") past `max`
/// bytes: bounded time and memory for any input.
pub fn read_bounded(r: impl Read, max: u64, what: &str) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} larger than {max} bytes"),
        ));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound() {
        assert_eq!(read_bounded(&b"abc"[..], 3, "x").unwrap(), b"abc");
        let e = read_bounded(&b"abcd"[..], 3, "input").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(e.to_string(), "input larger than 3 bytes");
    }
}
