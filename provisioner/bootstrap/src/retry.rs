//! Bounded exponential backoff, written once for every retry loop of this crate.
//!
//! An attempt says what happens next ([`Next`]); [`Backoff`] decides how long to wait and when to
//! give up. Only errors classified as transient by the caller (a host still booting, a dropped
//! connection) are ever retried.

use std::future::Future;
use std::time::Duration;

/// The outcome of one attempt.
#[derive(Debug)]
pub enum Next<T, E> {
    /// Finished: stop with this value.
    Done(T),
    /// Transient failure: try again after the backoff delay (while the budget lasts).
    Retry(E),
    /// Permanent failure: stop at once.
    Fail(E),
}

/// Delays between attempts: `initial`, doubling up to `max_delay`, for at most `max_attempts` attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failed attempt.
    pub initial: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
    /// Attempts in total, including the first (at least 1).
    pub max_attempts: u32,
}

impl Backoff {
    /// The delay after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max_delay)
    }

    /// Runs `attempt` until it is done, fails, or the attempts are used up. `on_retry` hears about
    /// every transient failure with the attempt number and the delay before the next one.
    /// Returns the last error and the number of attempts made on failure.
    pub async fn run<T, E, F, Fut>(
        &self,
        mut attempt: F,
        mut on_retry: impl FnMut(u32, &E, Duration),
    ) -> Result<T, (E, u32)>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Next<T, E>>,
    {
        let mut n = 1;
        loop {
            match attempt(n).await {
                Next::Done(v) => return Ok(v),
                Next::Fail(e) => return Err((e, n)),
                Next::Retry(e) => {
                    if n >= self.max_attempts.max(1) {
                        return Err((e, n));
                    }
                    let d = self.delay(n);
                    on_retry(n, &e, d);
                    tokio::time::sleep(d).await;
                    n += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        initial: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        max_attempts: 5,
    };

    #[test]
    fn delays_double_and_are_capped() {
        let d: Vec<_> = (1..=6).map(|n| B.delay(n).as_millis()).collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(B.delay(40), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_until_done() {
        let mut retries = Vec::new();
        let r: Result<u32, (&str, u32)> = tokio::time::timeout(
            Duration::from_secs(60),
            B.run(
                |n| async move {
                    if n < 3 {
                        Next::Retry("booting")
                    } else {
                        Next::Done(n)
                    }
                },
                |n, _, d| retries.push((n, d)),
            ),
        )
        .await
        .expect("test timed out");
        assert_eq!(r, Ok(3));
        assert_eq!(
            retries,
            vec![
                (1, Duration::from_millis(100)),
                (2, Duration::from_millis(200))
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failure_stops_at_once_and_budget_is_bounded() {
        let r: Result<(), (&str, u32)> = tokio::time::timeout(
            Duration::from_secs(60),
            B.run(|_| async { Next::Fail("auth") }, |_, _, _| {}),
        )
        .await
        .expect("test timed out");
        assert_eq!(r, Err(("auth", 1)));
        let r: Result<(), (&str, u32)> = tokio::time::timeout(
            Duration::from_secs(60),
            B.run(|_| async { Next::Retry("refused") }, |_, _, _| {}),
        )
        .await
        .expect("test timed out");
        assert_eq!(r, Err(("refused", 5)));
    }
}
