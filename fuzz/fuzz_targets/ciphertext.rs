//! Stored values as a tampering attacker writes them: any bytes under a storage key
//! are refused by every cipher's barrier (never opened, never a panic).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lockana::fuzzing::StoredValues;

static STORED: OnceLock<StoredValues> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let stored = STORED.get_or_init(|| StoredValues::new().expect("unsealed barriers"));
    assert_eq!(stored.open(data), 0, "arbitrary bytes opened as a ciphertext");
});
