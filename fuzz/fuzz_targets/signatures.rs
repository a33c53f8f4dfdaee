#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hchat::fuzzing::signatures(data));
