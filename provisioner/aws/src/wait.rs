//! Waiting on EC2, written once: poll with growing, jittered intervals until a check says done or
//! a deadline passes. Used for instances reaching `running`/`terminated` and for deletes that EC2
//! refuses with `DependencyViolation` while it still releases network interfaces.

use std::future::Future;
use std::time::Duration;

use dc_support::retry::{self, Backoff, Next, RetryError};

use crate::AwsError;

/// What one check found.
pub(crate) enum Poll<T> {
    /// Finished with this value.
    Done(T),
    /// Not yet; the reason is reported if the deadline passes.
    Pending(String),
}

/// How long and how often to poll.
#[derive(Debug, Clone, Copy)]
pub struct WaitPolicy {
    /// First interval.
    pub initial: Duration,
    /// Longest interval.
    pub max: Duration,
    /// Give up after this long.
    pub deadline: Duration,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        WaitPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            // Instances normally run within a minute; a teardown waits for terminations that
            // can take a few minutes on EC2.
            deadline: Duration::from_secs(600),
        }
    }
}

/// Runs `check` until it returns [`Poll::Done`], an error, or `policy.deadline` passes. A check's
/// transient error is retried like a pending one (up to the deadline). Intervals grow from
/// `initial` to `max` and are jittered, so many waiters do not poll EC2 in step.
pub(crate) async fn until<T, F, Fut>(
    op: &'static str,
    target: &str,
    policy: WaitPolicy,
    mut check: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, AwsError>>,
{
    let backoff = Backoff::new(policy.initial, policy.max).deadline(policy.deadline);
    // What the caller gets if the deadline passes first.
    let late = |why: String| AwsError {
        transient: true,
        hint: Some("EC2 is slow to settle: run the same dcform command again to continue"),
        ..AwsError::other(
            op,
            target,
            format!("still not done after {:?}: {why}", policy.deadline),
        )
    };
    let late = &late;
    retry::run(backoff, |at| {
        let checked = check();
        async move {
            match checked.await {
                Ok(Poll::Done(v)) => Next::Done(v),
                Ok(Poll::Pending(why)) => at.retry(late(why)),
                Err(e) if e.transient => at.retry(late(e.to_string())),
                Err(e) => Next::Fail(e),
            }
        }
    })
    .await
    .map_err(RetryError::into_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn a_wait_that_never_finishes_stops_at_its_deadline_with_the_reason() {
        let policy = WaitPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
        };
        let started = Instant::now();
        let e = until("wait", "i-1", policy, || async {
            Ok::<Poll<()>, AwsError>(Poll::Pending("i-1 is pending".into()))
        })
        .await
        .unwrap_err();
        assert!(e.to_string().contains("i-1 is pending"), "{e}");
        assert!(started.elapsed() <= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_returns_what_the_check_found() {
        let mut n = 0;
        let v = until("wait", "x", WaitPolicy::default(), || {
            n += 1;
            let done = n == 3;
            async move {
                Ok::<_, AwsError>(if done {
                    Poll::Done(7)
                } else {
                    Poll::Pending("not yet".into())
                })
            }
        })
        .await
        .unwrap();
        assert_eq!((v, n), (7, 3));
    }
}
