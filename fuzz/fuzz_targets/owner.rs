//! Reservation file content (the disk store's record format) and reservation file names.
#![no_main]

use host_local::store::disk::{encode_owner, parse_owner, parse_reservation_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(owner) = parse_owner(data) {
        let _ = owner.to_string();
        // What we would write back reads back as the same owner.
        let content = encode_owner(&owner).expect("a parsed owner has content");
        assert_eq!(parse_owner(content.as_bytes()), Ok(owner));
    }
    if let Ok(name) = std::str::from_utf8(data) {
        if let Some(ip) = parse_reservation_name(name) {
            assert_eq!(ip.to_string(), name);
        }
    }
});
