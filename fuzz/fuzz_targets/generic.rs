//! Kiroku's generic format: one event or `{"events": […]}`.
#![no_main]

use kiroku_domain::alert::generic;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    kiroku_fuzz::check_batch(&generic::parse(body));
});
