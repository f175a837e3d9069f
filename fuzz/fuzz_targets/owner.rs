//! Reservation file content (Owner::parse) and reservation file names.
#![no_main]

use host_local::store::disk::parse_reservation_name;
use host_local::store::Owner;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let owner = Owner::parse(data);
    let _ = owner.to_string();
    if let Some(content) = owner.to_content() {
        // What we would write back reads back as the same owner.
        assert_eq!(Owner::parse(content.as_bytes()), owner);
    }
    if let Ok(name) = std::str::from_utf8(data) {
        if let Some(ip) = parse_reservation_name(name) {
            assert_eq!(ip.to_string(), name);
        }
    }
});
