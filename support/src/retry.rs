//! Retry with backoff, written once for the whole workspace.
//!
//! A step says what happens next — [`Next::Done`], [`Next::RetryAfter`] (a delay and the reason
//! for it), or [`Next::Fail`] — and [`run`] owns the waiting and the budget (attempts and/or a
//! deadline), the way a kube-rs reconciler returns `Action::requeue(d)` instead of sleeping.
//! Each step is told the delay its [`Backoff`] suggests ([`Attempt::backoff`]), so the ordinary
//! transient failure reads `attempt.retry(e)`; a step that knows better (a poll interval, a
//! server's Retry-After) names its own delay, which is used as given.
//!
//! ```
//! use dc_support::retry::{self, Backoff, Next};
//! use std::time::Duration;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let policy = Backoff::new(Duration::from_millis(1), Duration::from_millis(4)).attempts(5);
//! let got: Result<u32, _> = retry::run(policy, |at| async move {
//!     if at.number < 3 { at.retry("not yet") } else { Next::Done(at.number) }
//! })
//! .await;
//! assert_eq!(got, Ok(3));
//! # }
//! ```
//!
//! Suggested delays are **jittered**: nodes that fail together (a master restarting under a
//! hundred agents, twenty hosts booting at once) must not retry in lock step. The jitter comes
//! from a tiny generator seeded afresh for every run; [`Backoff::seed`] fixes it so a test sees
//! the same delays every time.
//!
//! Cancellation: dropping the future of [`run`] stops it between or during attempts (a daemon may
//! race it against its shutdown signal with `tokio::select!`). A step that must finish what it is
//! doing when shutdown comes (stop a child process gracefully) watches the signal itself, and
//! [`run_cancellable`] ends the waits between attempts on that same signal.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Exponential backoff: `initial`, doubling after every failed attempt up to `max`, each delay
/// jittered by up to ± [`jitter`](Backoff::jitter) percent, within a budget of attempts and/or
/// time. Without a budget, [`run`] retries until the step is done or fails.
///
/// The jitter is centred on the nominal delay, so a budget of attempts lasts as long on average
/// as it would without jitter (a health wait of 90 attempts still waits about as long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempts: Option<u32>,
    deadline: Option<Duration>,
    jitter_percent: u8,
    seed: Option<u64>,
}

impl Backoff {
    /// One attempt, no retry.
    pub const ONCE: Backoff = Backoff::new(Duration::ZERO, Duration::ZERO).attempts(1);

    /// Delays from `initial` doubling up to `max`, ± 25 % jitter, no budget.
    pub const fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            attempts: None,
            deadline: None,
            jitter_percent: 25,
            seed: None,
        }
    }

    /// At most `n` attempts in total, the first included (at least 1).
    pub const fn attempts(mut self, n: u32) -> Backoff {
        self.attempts = Some(if n == 0 { 1 } else { n });
        self
    }

    /// Give up once `budget` has passed since the first attempt started. The last wait is cut
    /// short so that one final attempt happens at the deadline.
    pub const fn deadline(mut self, budget: Duration) -> Backoff {
        self.deadline = Some(budget);
        self
    }

    /// Each suggested delay `d` is drawn uniformly from `[d - d·percent/100, d + d·percent/100]`
    /// (percent capped at 100; a jittered delay may pass `max` by that share). 0 gives the plain
    /// exponential sequence.
    pub const fn jitter(mut self, percent: u8) -> Backoff {
        self.jitter_percent = if percent > 100 { 100 } else { percent };
        self
    }

    /// Fixes the jitter's random sequence (tests); by default every run draws a fresh seed.
    pub const fn seed(mut self, seed: u64) -> Backoff {
        self.seed = Some(seed);
        self
    }

    /// The first delay, before jitter.
    pub const fn initial(&self) -> Duration {
        self.initial
    }

    /// The largest delay.
    pub const fn max(&self) -> Duration {
        self.max
    }

    /// The attempt limit, if any.
    pub const fn max_attempts(&self) -> Option<u32> {
        self.attempts
    }

    /// The time budget, if any.
    pub const fn time_budget(&self) -> Option<Duration> {
        self.deadline
    }

    /// The delay after failed attempt `n` (1-based), before jitter: `initial · 2^(n-1)`, at most `max`.
    pub fn base_delay(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(31);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// What a step says should happen next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<T, E> {
    /// Finished with a value.
    Done(T),
    /// Not yet (a transient failure, or not ready): try again after this delay. The reason is
    /// what the caller gets if the budget runs out first.
    RetryAfter(Duration, E),
    /// Failed for good: stop now.
    Fail(E),
}

/// What a step is told about the attempt it is making.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// The jittered delay the [`Backoff`] suggests before the next attempt.
    pub backoff: Duration,
    /// No attempt follows this one, whatever it returns (the attempt limit or the deadline is
    /// reached): a step logs "retrying in ..." only when this is false.
    pub last: bool,
}

impl Attempt {
    /// Retry after the suggested [`backoff`](Attempt::backoff), for `reason`.
    pub fn retry<T, E>(&self, reason: E) -> Next<T, E> {
        Next::RetryAfter(self.backoff, reason)
    }
}

/// Why [`run`] stopped without a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryError<E> {
    /// A step returned [`Next::Fail`].
    Failed {
        /// The step's error.
        error: E,
        /// Attempts made, the failing one included.
        attempts: u32,
    },
    /// The attempt limit or the deadline was reached while the step still asked to retry.
    Exhausted {
        /// The reason given by the last attempt.
        error: E,
        /// Attempts made.
        attempts: u32,
    },
    /// The cancel signal of [`run_cancellable`] came while waiting to retry.
    Cancelled {
        /// The reason given by the last attempt.
        error: E,
        /// Attempts made.
        attempts: u32,
    },
}

impl<E> RetryError<E> {
    /// The error of the last attempt, however the run ended.
    pub fn into_error(self) -> E {
        match self {
            RetryError::Failed { error, .. }
            | RetryError::Exhausted { error, .. }
            | RetryError::Cancelled { error, .. } => error,
        }
    }

    /// Attempts made.
    pub fn attempts(&self) -> u32 {
        match self {
            RetryError::Failed { attempts, .. }
            | RetryError::Exhausted { attempts, .. }
            | RetryError::Cancelled { attempts, .. } => *attempts,
        }
    }
}

/// Runs `step` (attempt 1, 2, ...) until it is done, fails, or the budget of `policy` is spent.
pub async fn run<T, E, F, Fut>(policy: Backoff, step: F) -> Result<T, RetryError<E>>
where
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Next<T, E>>,
{
    run_cancellable(policy, std::future::pending(), step).await
}

/// As [`run`], and a wait between attempts ends with [`RetryError::Cancelled`] as soon as
/// `cancelled` completes (e.g. `shutdown.cancelled()` of a tokio-util `CancellationToken`). An
/// attempt in progress is not interrupted: it sees the same signal and decides itself.
pub async fn run_cancellable<T, E, F, Fut, C>(
    policy: Backoff,
    cancelled: C,
    mut step: F,
) -> Result<T, RetryError<E>>
where
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Next<T, E>>,
    C: Future<Output = ()>,
{
    let mut cancelled = std::pin::pin!(cancelled);
    let mut schedule = Schedule::new(policy);
    loop {
        let attempt = schedule.attempt();
        let (wait, error) = match schedule.after(step(attempt).await) {
            Ok(w) => w,
            Err(end) => return end,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut cancelled => return Err(RetryError::Cancelled { error, attempts: schedule.n }),
        }
        schedule.n += 1;
    }
}

/// As [`run`] for synchronous code (a file lock taken before any runtime exists): the waits
/// block the calling thread. Never call it on an async task.
pub fn run_blocking<T, E, F>(policy: Backoff, mut step: F) -> Result<T, RetryError<E>>
where
    F: FnMut(Attempt) -> Next<T, E>,
{
    let mut schedule = Schedule::new(policy);
    loop {
        let attempt = schedule.attempt();
        let (wait, _) = match schedule.after(step(attempt)) {
            Ok(w) => w,
            Err(end) => return end,
        };
        std::thread::sleep(wait);
        schedule.n += 1;
    }
}

/// The bookkeeping of one run (attempt number, budget, jitter), shared by the async and the
/// blocking runner so both count and cut waits the same way.
struct Schedule {
    policy: Backoff,
    deadline: Option<Instant>,
    jitter: Jitter,
    /// The current attempt, 1-based.
    n: u32,
}

impl Schedule {
    fn new(policy: Backoff) -> Schedule {
        Schedule {
            deadline: policy.deadline.map(|d| Instant::now() + d),
            jitter: Jitter::new(policy.seed),
            policy,
            n: 1,
        }
    }

    fn out_of_attempts(&self) -> bool {
        self.policy.attempts.is_some_and(|max| self.n >= max)
    }

    fn attempt(&mut self) -> Attempt {
        Attempt {
            number: self.n,
            backoff: self
                .jitter
                .apply(self.policy.base_delay(self.n), self.policy.jitter_percent),
            last: self.out_of_attempts() || self.deadline.is_some_and(|d| Instant::now() >= d),
        }
    }

    /// What follows a step's answer: `Err` with the run's result when it ends here, else the
    /// wait before the next attempt (cut to the deadline) and the reason to report if that wait
    /// is cancelled.
    fn after<T, E>(&self, next: Next<T, E>) -> Result<(Duration, E), Result<T, RetryError<E>>> {
        let attempts = self.n;
        let (wait, error) = match next {
            Next::Done(v) => return Err(Ok(v)),
            Next::Fail(error) => return Err(Err(RetryError::Failed { error, attempts })),
            Next::RetryAfter(wait, error) => (wait, error),
        };
        let left = self
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        if self.out_of_attempts() || left.is_some_and(|l| l.is_zero()) {
            return Err(Err(RetryError::Exhausted { error, attempts }));
        }
        Ok((left.map_or(wait, |l| wait.min(l)), error))
    }
}

/// The jitter's generator: [`SplitMix64`](crate::splitmix::SplitMix64), seeded afresh unless the
/// policy fixes the seed.
struct Jitter(crate::splitmix::SplitMix64);

impl Jitter {
    fn new(seed: Option<u64>) -> Jitter {
        use crate::splitmix::SplitMix64;
        Jitter(SplitMix64::new(seed.unwrap_or_else(SplitMix64::fresh_seed)))
    }

    /// `d` ± a uniformly drawn part of its `percent`.
    fn apply(&mut self, d: Duration, percent: u8) -> Duration {
        let unit = self.0.unit();
        let span = d.mul_f64(f64::from(percent) / 100.0);
        d.saturating_sub(span)
            .saturating_add(span.mul_f64(2.0 * unit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn ms(d: Duration) -> u128 {
        d.as_millis()
    }

    /// Runs `policy` against a step that always asks to retry, and returns the suggested delays.
    async fn suggested(policy: Backoff) -> Vec<Duration> {
        let mut seen = Vec::new();
        let _ = run(policy, |at| {
            seen.push(at.backoff);
            async move { at.retry::<(), _>(()) }
        })
        .await;
        seen
    }

    #[test]
    fn base_delays_double_up_to_the_cap() {
        let b = Backoff::new(100 * MS, 500 * MS);
        let d: Vec<u128> = (1..=5).map(|n| ms(b.base_delay(n))).collect();
        assert_eq!(d, vec![100, 200, 400, 500, 500]);
        assert_eq!(b.base_delay(400), 500 * MS, "no overflow far out");
        assert_eq!(Backoff::ONCE.base_delay(3), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn without_jitter_the_suggested_delays_are_the_exponential_sequence() {
        let b = Backoff::new(100 * MS, 350 * MS).jitter(0).attempts(4);
        let d: Vec<u128> = suggested(b).await.into_iter().map(ms).collect();
        assert_eq!(d, vec![100, 200, 350, 350]);
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_stays_within_its_share_and_is_reproducible_from_the_seed() {
        let b = Backoff::new(1000 * MS, 1000 * MS).attempts(50).seed(7);
        let first = suggested(b).await;
        assert!(
            first.iter().all(|d| (750 * MS..=1250 * MS).contains(d)),
            "{first:?}"
        );
        let mean = first.iter().sum::<Duration>() / 50;
        assert!(
            (900 * MS..=1100 * MS).contains(&mean),
            "centred on the nominal delay: {mean:?}"
        );
        assert_eq!(first, suggested(b).await, "same seed, same delays");
        let other = suggested(b.seed(8)).await;
        assert_ne!(first, other, "another seed, other delays");
        let distinct: std::collections::BTreeSet<_> = first.iter().collect();
        assert!(distinct.len() > 40, "delays are spread: {distinct:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn two_unseeded_runs_do_not_retry_in_lock_step() {
        let b = Backoff::new(1000 * MS, 1000 * MS).attempts(10);
        assert_ne!(suggested(b).await, suggested(b).await);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_done_and_waits_the_suggested_delays() {
        let b = Backoff::new(MS * 1000, MS * 4000).jitter(0).attempts(5);
        let start = Instant::now();
        let r: Result<u32, RetryError<&str>> = run(b, |at| async move {
            if at.number == 3 {
                Next::Done(at.number)
            } else {
                at.retry("not yet")
            }
        })
        .await;
        assert_eq!(r, Ok(3));
        assert_eq!(start.elapsed(), 3000 * MS, "1 s then 2 s");
    }

    #[tokio::test(start_paused = true)]
    async fn the_attempt_limit_returns_the_last_reason_and_marks_the_last_attempt() {
        let b = Backoff::new(MS, MS).attempts(3);
        let mut lasts = Vec::new();
        let r: Result<(), _> = run(b, |at| {
            lasts.push(at.last);
            async move { at.retry(format!("attempt {}", at.number)) }
        })
        .await;
        assert_eq!(
            r,
            Err(RetryError::Exhausted {
                error: "attempt 3".to_string(),
                attempts: 3
            })
        );
        assert_eq!(lasts, vec![false, false, true]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_is_not_retried() {
        let mut calls = 0;
        let r: Result<(), _> = run(Backoff::new(MS, MS).attempts(5), |_| {
            calls += 1;
            async { Next::Fail("no") }
        })
        .await;
        assert_eq!(
            (r, calls),
            (
                Err(RetryError::Failed {
                    error: "no",
                    attempts: 1
                }),
                1
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_ends_the_run_with_one_last_attempt_at_the_deadline() {
        let b = Backoff::new(300 * MS, 4000 * MS)
            .jitter(0)
            .deadline(1000 * MS);
        let start = Instant::now();
        let mut at_times = Vec::new();
        let r: Result<(), _> = run(b, |at| {
            at_times.push((ms(start.elapsed()), at.last));
            async move { at.retry("pending") }
        })
        .await;
        assert_eq!(r.map_err(|e| e.attempts()), Err(4));
        // 0, then +300, +600; the next +1200 would end at 2100: that wait is cut to the deadline.
        assert_eq!(
            at_times,
            vec![(0, false), (300, false), (900, false), (1000, true)]
        );
        assert_eq!(start.elapsed(), 1000 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_that_names_its_delay_gets_exactly_that_delay() {
        let start = Instant::now();
        let r: Result<u32, RetryError<()>> = run(Backoff::new(MS, MS), |at| async move {
            if at.number < 4 {
                Next::RetryAfter(250 * MS, ())
            } else {
                Next::Done(at.number)
            }
        })
        .await;
        assert_eq!(r, Ok(4));
        assert_eq!(start.elapsed(), 750 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_signal_ends_the_wait_but_not_the_attempt_in_progress() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut tx = Some(tx);
        let start = Instant::now();
        let r: Result<(), _> = run_cancellable(
            Backoff::new(Duration::from_secs(10), Duration::from_secs(10)).jitter(0),
            async {
                let _ = rx.await;
            },
            |at| {
                // Cancelled during the first attempt, which still runs to its end.
                let tx = tx.take();
                async move {
                    if let Some(tx) = tx {
                        let _ = tx.send(());
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    at.retry("busy")
                }
            },
        )
        .await;
        assert_eq!(
            r,
            Err(RetryError::Cancelled {
                error: "busy",
                attempts: 1
            })
        );
        assert_eq!(start.elapsed(), Duration::from_secs(1), "no 10 s wait");
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_run_stops_further_attempts() {
        let calls = std::cell::Cell::new(0);
        let unlimited = Backoff::new(100 * MS, 100 * MS).jitter(0);
        let r = tokio::time::timeout(
            350 * MS,
            run(unlimited, |at| {
                calls.set(calls.get() + 1);
                async move { at.retry::<(), _>(()) }
            }),
        )
        .await;
        assert!(r.is_err(), "an unlimited policy runs until it is dropped");
        assert_eq!(calls.get(), 4, "attempts at 0, 100, 200, 300 ms");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(calls.get(), 4, "none after the drop");
    }

    #[test]
    fn the_blocking_runner_counts_attempts_and_stops_at_its_limit() {
        let mut seen = Vec::new();
        let policy = Backoff::new(MS, 2 * MS).jitter(0).attempts(3);
        let r: Result<(), _> = run_blocking(policy, |at| {
            seen.push((at.number, at.last));
            at.retry("busy")
        });
        assert_eq!(
            r,
            Err(RetryError::Exhausted {
                error: "busy",
                attempts: 3
            })
        );
        assert_eq!(seen, [(1, false), (2, false), (3, true)]);
    }

    #[test]
    fn the_blocking_runner_returns_the_value_and_waits_between_attempts() {
        let started = std::time::Instant::now();
        let r: Result<u32, RetryError<&str>> =
            run_blocking(Backoff::new(20 * MS, 20 * MS).jitter(0), |at| {
                if at.number < 3 {
                    at.retry("not yet")
                } else {
                    Next::Done(at.number)
                }
            });
        assert_eq!(r, Ok(3));
        assert!(started.elapsed() >= 40 * MS, "two waits of 20 ms");
    }

    #[test]
    fn the_blocking_runner_stops_at_its_deadline_and_on_a_failure() {
        let policy = Backoff::new(5 * MS, 5 * MS).jitter(0).deadline(30 * MS);
        let r: Result<(), _> = run_blocking(policy, |at| at.retry(at.number));
        let Err(RetryError::Exhausted { attempts, .. }) = r else {
            panic!("a deadline ends the run: {r:?}")
        };
        assert!(
            (2..=8).contains(&attempts),
            "{attempts} attempts in 30 ms at 5 ms"
        );
        let r: Result<(), _> = run_blocking(policy, |_| Next::Fail("bad"));
        assert_eq!(
            r,
            Err(RetryError::Failed {
                error: "bad",
                attempts: 1
            })
        );
    }
}
