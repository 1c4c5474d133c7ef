//! Grafana's alerting webhook, read as `/api/v1/integrations/…` reads it.
#![no_main]

use kiroku_domain::alert::grafana;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    kiroku_fuzz::check_batch(&grafana::parse(body).map(|batch| batch.into_events()));
});
