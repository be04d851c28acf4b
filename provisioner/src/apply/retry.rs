//! Retry with backoff, written once. An attempt returns [`Next`]; the loop owns the waiting.

use std::future::Future;
use std::time::Duration;

/// What an attempt says should happen next.
#[derive(Debug)]
pub enum Next<T, E> {
    /// Finished with a value.
    Done(T),
    /// Not yet (transient failure or not ready): try again after the policy's delay. Carries the last error so
    /// that running out of attempts reports it.
    Retry(E),
    /// Failed for good.
    Fail(E),
}

/// Exponential backoff with a cap and a bounded number of attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Backoff {
    /// Delay before the second attempt.
    pub initial: Duration,
    /// Largest delay between attempts.
    pub max: Duration,
    /// Total attempts, including the first (at least 1).
    pub attempts: u32,
}

impl Backoff {
    /// A single attempt, no retry.
    pub const ONCE: Backoff = Backoff {
        initial: Duration::ZERO,
        max: Duration::ZERO,
        attempts: 1,
    };

    /// The delay after attempt `n` (1-based) failed.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32
            .checked_shl(n.saturating_sub(1).min(16))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Runs `attempt(n)` (n = 1, 2, ...) until it is done, fails for good, or runs out of attempts.
pub async fn with_backoff<T, E, F, Fut>(policy: Backoff, mut attempt: F) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Next<T, E>>,
{
    let mut n = 1;
    loop {
        match attempt(n).await {
            Next::Done(v) => return Ok(v),
            Next::Fail(e) => return Err(e),
            Next::Retry(e) if n >= policy.attempts.max(1) => return Err(e),
            Next::Retry(_) => {
                tokio::time::sleep(policy.delay(n)).await;
                n += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            attempts: 10,
        };
        let d: Vec<u128> = (1..=5).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(d, vec![100, 200, 400, 500, 500]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_done_and_stops_at_the_attempt_limit() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(4),
            attempts: 3,
        };
        let r: Result<u32, &str> = with_backoff(b, |n| async move {
            if n == 3 {
                Next::Done(n)
            } else {
                Next::Retry("not yet")
            }
        })
        .await;
        assert_eq!(r, Ok(3));
        let r: Result<u32, String> =
            with_backoff(b, |n| async move { Next::Retry(format!("attempt {n}")) }).await;
        assert_eq!(r, Err("attempt 3".to_string()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_is_not_retried() {
        let mut calls = 0;
        let r: Result<(), &str> = with_backoff(
            Backoff {
                attempts: 5,
                ..Backoff::ONCE
            },
            |_| {
                calls += 1;
                async { Next::Fail("no") }
            },
        )
        .await;
        assert_eq!((r, calls), (Err("no"), 1));
    }
}
