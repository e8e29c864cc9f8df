//! Arbitrary input (as lossy UTF-8) into the settings loader, the validator and the masked
//! dump that `check-config` prints: none of them may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use paperboy::config::Settings;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(settings) = Settings::from_toml(&text) {
        if settings.validate().is_ok() {
            let _ = settings.to_masked_toml();
        }
    }
});
