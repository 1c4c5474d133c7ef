//! The configuration file: TOML read into its shape, then every value
//! checked as `kiroku serve` checks it, with no flag or variable over it.
#![no_main]

use kiroku::config::{ServeArgs, Settings, parse_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `serve` reads the file as UTF-8 text and refuses anything else.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = match parse_file(text) {
        Ok(file) => file,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    match Settings::from_file(&ServeArgs::default(), &file) {
        Ok(settings) => {
            let interval = settings.audit.head_interval.as_millis();
            assert!((10..=3_600_000).contains(&interval), "{interval}");
            assert!(settings.app.notify.retry.max_attempts >= 1);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
