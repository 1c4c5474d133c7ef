//! Other applications' audit events: the body of `POST /api/v1/audit/events`
//! read by the server's JSON parser, then checked and made into audit
//! events as ingestion does before it queues them.
#![no_main]

use kiroku_app::{AppError, external_audit_events};
use kiroku_server::{IngestBody, parse_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let events = match parse_json::<IngestBody>(body) {
        Ok(body) => body.events,
        Err(e) => {
            // Only a body that is not JSON at all is refused without a field.
            assert!(
                e.body.code == "malformed_json" || e.body.field.is_some(),
                "{:?}",
                e.body
            );
            return;
        }
    };
    match external_audit_events(events, "ingest:fuzz") {
        Ok(accepted) => {
            for event in &accepted {
                assert!(event.action.chars().count() <= 100);
                assert!(event.target.kind.chars().count() <= 100);
                let ip = event
                    .source
                    .ip
                    .as_deref()
                    .expect("an event keeps its address");
                assert!(ip.parse::<std::net::IpAddr>().is_ok(), "{ip:?}");
                // What validation lets through must canonicalise, and the
                // append path's writer must agree with RFC 8785's.
                let written = kiroku_audit::canonical_event(event).expect("accepted, so canonical");
                assert_eq!(written, kiroku_audit::canonical_doc(event).unwrap());
            }
        }
        Err(AppError::Invalid(problem)) => kiroku_fuzz::check_refusal(&problem),
        Err(other) => panic!("validation refused with {other:?}"),
    }
});
