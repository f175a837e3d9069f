//! Result conversion: from_wire of arbitrary JSON in each version, then
//! to_wire in every version. Never a panic; what we print we can read back.
#![no_main]

use cni_proto::{CniResult, SpecVersion};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for from in SpecVersion::ALL {
        let Ok(r) = CniResult::from_wire(&value, from) else {
            continue;
        };
        for to in SpecVersion::ALL {
            let Ok(wire) = r.to_wire(to) else { continue };
            let back = CniResult::from_wire(&wire, to)
                .unwrap_or_else(|e| panic!("{to} result we printed does not read back: {e}"));
            let again = back.to_wire(to).expect("converted once, converts again");
            assert_eq!(again, wire, "{from} -> {to} not stable");
        }
    }
});
