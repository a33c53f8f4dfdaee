#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hchat::fuzzing::tracker_api(data));
