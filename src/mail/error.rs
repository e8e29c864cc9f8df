//! Why a message did not go, sorted into the two classes delivery cares about: worth
//! retrying, or not. Every transport's failures (lettre's, the pipelining client's, the
//! outbox's) end up as a [`SendError`], so the send loop and the notices decide on one type.

use std::sync::Arc;

use super::smtp;
use crate::telemetry::Flat;

/// Why a message did not go: which of the two classes the failure is in, what was being
/// done when the cause alone would not say it, and the cause itself (lettre's error, the
/// socket's, the store's).
#[derive(Debug, Clone)]
pub struct SendError {
    kind: SendErrorKind,
    doing: Option<String>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendErrorKind {
    /// 4xx, refused or dropped connections, timeouts, a full disk: try again later.
    Transient,
    /// 5xx for this recipient or message: retrying will not help.
    Permanent,
}

impl SendError {
    fn new(kind: SendErrorKind) -> Self {
        Self {
            kind,
            doing: None,
            source: None,
        }
    }

    /// A temporary failure, said in words: "the server did not answer within 30 s".
    pub fn transient(doing: impl Into<String>) -> Self {
        Self::new(SendErrorKind::Transient).doing(doing)
    }

    /// A permanent failure, said in words.
    pub fn permanent(doing: impl Into<String>) -> Self {
        Self::new(SendErrorKind::Permanent).doing(doing)
    }

    /// A temporary failure that `cause` says all about.
    pub fn transient_from(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(SendErrorKind::Transient).because(cause)
    }

    /// A permanent failure that `cause` says all about.
    pub fn permanent_from(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(SendErrorKind::Permanent).because(cause)
    }

    fn doing(mut self, doing: impl Into<String>) -> Self {
        self.doing = Some(doing.into());
        self
    }

    /// The same failure, caused by `cause`.
    pub fn because(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(cause));
        self
    }

    pub fn kind(&self) -> SendErrorKind {
        self.kind
    }

    pub fn is_transient(&self) -> bool {
        self.kind == SendErrorKind::Transient
    }

    /// What went wrong and why, without the class: for a delivery's record, whose state
    /// already says whether it will be tried again.
    pub fn reason(&self) -> String {
        let cause = self
            .source
            .as_deref()
            .map(|c| crate::telemetry::one_line(c));
        match (&self.doing, cause) {
            (Some(doing), Some(cause)) => format!("{doing}: {cause}"),
            (Some(doing), None) => doing.clone(),
            (None, Some(cause)) => cause,
            (None, None) => String::new(),
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            SendErrorKind::Transient => "temporary failure",
            SendErrorKind::Permanent => "permanent failure",
        })?;
        match &self.doing {
            Some(doing) => write!(f, ": {doing}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|c| c as _)
    }
}

impl From<smtp::Error> for SendError {
    fn from(e: smtp::Error) -> Self {
        if e.permanent {
            SendError::permanent_from(e)
        } else {
            SendError::transient_from(e)
        }
    }
}

pub(super) fn classify_smtp(e: lettre::transport::smtp::Error) -> SendError {
    if e.is_permanent() {
        SendError::permanent_from(Flat(e))
    } else {
        SendError::transient_from(Flat(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_error_keeps_its_cause_and_says_it_once() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = SendError::transient("connecting to mx.example.org:25").because(refused);
        assert_eq!(
            crate::telemetry::one_line(&e),
            "temporary failure: connecting to mx.example.org:25: refused"
        );
        assert_eq!(e.reason(), "connecting to mx.example.org:25: refused");
        let cause = std::error::Error::source(&e).expect("a cause");
        assert_eq!(
            cause.downcast_ref::<std::io::Error>().map(|io| io.kind()),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
    }
}
