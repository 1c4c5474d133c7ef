//! Alertmanager's webhook (version 4), read as `/api/v1/integrations/…`
//! reads it: the group parsed, then made into events.
#![no_main]

use kiroku_domain::alert::alertmanager;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    kiroku_fuzz::check_batch(&alertmanager::parse(body).map(|batch| batch.into_events()));
});
