//! The server's HCL configuration file: parsed and checked, or refused with an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = lockana_server::Config::parse(text) {
        let _ = config.server_options();
    }
});
