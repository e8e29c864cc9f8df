//! Domain types that cannot hold invalid values.
//!
//! Everything that crosses a boundary (a CLI argument, a config value, a scraped page, a stored
//! record) is parsed into one of these once; the rest of the code then works with values that are
//! known to be valid and never re-checks them.

mod bounce;
mod cadence;
mod edition;
mod email;
mod paper;
mod sighting;
mod subscriber;

pub use bounce::{BounceKind, BounceNote, TransientBounce, TransientLimit};
pub use cadence::{CadenceError, Frequency, SendAt, day_code};
pub use edition::EditionDate;
pub use email::{EmailError, SubscriberEmail};
pub use paper::{Author, HttpUrl, Paper, PaperId, PaperIdError};
pub use sighting::{SentOn, Sighting};
pub use subscriber::{
    Choices, Confirmation, EditionDays, Keywords, MAX_ITEMS_CAP, NOTICE_INTERVAL, Notice, Place,
    Preferences, PreferencesError, Searchable, Status, Subscriber, SubscriberId,
};
