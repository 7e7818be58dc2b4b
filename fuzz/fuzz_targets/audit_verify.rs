//! `lockana audit verify` on arbitrary files: a summary or a named break, never a
//! panic. Input bytes are split at the first 0xFF into two files (a rotated pair).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let files: Vec<&[u8]> = match data.iter().position(|b| *b == 0xFF) {
        Some(i) => vec![&data[..i], &data[i + 1..]],
        None => vec![data],
    };
    match lockana::verify_audit_chain(files.iter().copied()) {
        Ok(summary) => assert!(summary.lines as usize <= data.len()),
        Err(Ok(brk)) => assert!(brk.line >= 1 && brk.file < files.len()),
        Err(Err(_)) => unreachable!("reading a slice cannot fail"),
    }
});
