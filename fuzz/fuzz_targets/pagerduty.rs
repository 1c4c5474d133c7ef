//! PagerDuty Events API v2: the bytes `/v2/enqueue` and
//! `/v2/change/enqueue` hand their parsers.
#![no_main]

use kiroku_domain::alert::pagerduty::{ROUTING_KEY_MAX, parse_change, parse_event};
use kiroku_domain::alert::{SOURCE_MAX, SUMMARY_MAX};
use kiroku_fuzz::{check_event, check_problems};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    match parse_event(body) {
        Ok(sent) => {
            assert!(sent.routing_key.chars().count() <= ROUTING_KEY_MAX);
            check_event(&sent.event);
        }
        Err(problems) => check_problems(&problems),
    }
    match parse_change(body) {
        Ok(sent) => {
            assert!(sent.routing_key.chars().count() <= ROUTING_KEY_MAX);
            assert!(sent.change.summary.chars().count() <= SUMMARY_MAX);
            if let Some(source) = &sent.change.source {
                assert!(source.chars().count() <= SOURCE_MAX);
            }
        }
        Err(problems) => check_problems(&problems),
    }
});
