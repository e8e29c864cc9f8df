//! Retrying a send: temporary failures (4xx, a dropped connection) are tried again after a
//! growing, jittered wait; permanent ones are not.

use std::time::Duration;

use super::SendError;
use crate::telemetry::metrics::{self, Metrics};

/// Runs `op` until it succeeds, fails permanently, or has failed temporarily `attempts`
/// times, waiting with exponential backoff and jitter in between.
pub async fn with_retries<F, Fut>(attempts: u32, m: &Metrics, mut op: F) -> Result<(), SendError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), SendError>>,
{
    let mut attempt = 1;
    loop {
        let result = op().await;
        if result.is_err() {
            metrics::inc(&m.smtp_errors);
        }
        match result {
            Err(e) if e.is_transient() && attempt < attempts => {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// 0.5 s, 1 s, 2 s, … capped at 30 s, each ±25 % so parallel senders do not retry in step.
fn backoff(attempt: u32) -> Duration {
    let base = 500u64.saturating_mul(1 << attempt.saturating_sub(1).min(10));
    let capped = base.min(30_000) as f64;
    let jitter = 0.75 + rand::random::<f64>() * 0.5;
    Duration::from_millis((capped * jitter) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) <= Duration::from_millis(625));
        assert!(backoff(3) >= Duration::from_millis(1500));
        assert!(backoff(30) <= Duration::from_millis(37_500));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_only_what_is_temporary() {
        let mut calls = 0;
        let r = with_retries(3, &Metrics::default(), || {
            calls += 1;
            async { Err(SendError::transient("421")) }
        })
        .await;
        assert!(r.is_err_and(|e| e.is_transient()));
        assert_eq!(calls, 3);

        let mut calls = 0;
        let r = with_retries(3, &Metrics::default(), || {
            calls += 1;
            async { Err(SendError::permanent("550")) }
        })
        .await;
        assert!(r.is_err_and(|e| !e.is_transient()));
        assert_eq!(calls, 1);
    }
}
