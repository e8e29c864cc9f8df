//! Arbitrary input (as lossy UTF-8) into the settings loader, the environment overrides, the
//! validator and the masked dump that `check-config` prints: none of them may panic.
//!
//! Lines of the form `PAPERBOY_...=value` become environment overrides; the rest is the file.

#![no_main]

use libfuzzer_sys::fuzz_target;
use paperboy::config::Settings;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut vars = Vec::new();
    let mut file = String::new();
    for line in text.lines() {
        match line.split_once('=') {
            Some((k, v)) if k.starts_with("PAPERBOY_") => vars.push((k.to_string(), v.to_string())),
            _ => {
                file.push_str(line);
                file.push('\n');
            }
        }
    }
    for settings in [
        Settings::from_toml(&file),
        Settings::from_toml_with_env(&file, vars),
    ]
    .into_iter()
    .flatten()
    {
        if settings.validate().is_ok() {
            let _ = settings.to_masked_toml();
        }
    }
});
