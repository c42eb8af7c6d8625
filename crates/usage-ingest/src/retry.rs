//! One way to retry a ClickHouse request: inserts, reads of enrichment
//! state, the reads at start-up. Each is retried until it succeeds, with
//! exponential backoff and jitter, so that an outage slows the pipeline down
//! instead of stopping it. What happens between two attempts is the caller's
//! ([`Wait`]): a sleep ([`Sleep`]), a sleep that gives up when the process is
//! told to stop ([`SleepUnlessStopped`]), or the pipeline's wait that keeps
//! the consumer polled with every partition paused, given up on once the
//! process abandons its work ([`UnlessStopped`]).

use rand::Rng;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// The backoff between attempts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1-based): exponential, capped, with full jitter
    /// over its upper half so that instances restarting together do not retry in lockstep.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max);
        let half = capped / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
}

/// What a retry does between two attempts.
pub(crate) trait Wait {
    /// Waits `delay` before the next attempt; `false`: give up instead.
    async fn wait(&mut self, delay: Duration) -> bool;
}

/// Sleeps between attempts; never gives up.
pub(crate) struct Sleep;

impl Wait for Sleep {
    async fn wait(&mut self, delay: Duration) -> bool {
        tokio::time::sleep(delay).await;
        true
    }
}

/// Sleeps between attempts; gives up once `stop` is true, before the sleep
/// or during it.
pub(crate) struct SleepUnlessStopped<'a>(pub(crate) &'a mut watch::Receiver<bool>);

impl Wait for SleepUnlessStopped<'_> {
    async fn wait(&mut self, delay: Duration) -> bool {
        if *self.0.borrow() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = self.0.wait_for(|stop| *stop) => false,
        }
    }
}

/// Waits as `inner` does, unless `stop` is true before the wait: then gives up.
pub(crate) struct UnlessStopped<'a, W> {
    pub(crate) stop: &'a watch::Receiver<bool>,
    pub(crate) inner: &'a mut W,
}

impl<W: Wait> Wait for UnlessStopped<'_, W> {
    async fn wait(&mut self, delay: Duration) -> bool {
        if *self.stop.borrow() {
            return false;
        }
        self.inner.wait(delay).await
    }
}

/// Runs `attempt` (given its number, from 1) until it succeeds. After each
/// failure `failed` is told the error, the attempt's number and the delay
/// before the next one (to count and log it); then `wait` waits that delay,
/// or gives up: the last error is returned.
pub(crate) async fn retry<T, E, Fut>(
    policy: RetryPolicy,
    wait: &mut impl Wait,
    mut attempt: impl FnMut(u32) -> Fut,
    failed: impl FnMut(&E, u32, Duration),
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    let each = |(), number| {
        let request = attempt(number);
        async move { ((), request.await) }
    };
    retry_with(policy, wait, (), each, failed).await
}

/// [`retry`] for requests that work on a state lent to one attempt at a
/// time (e.g. `&mut` what a read fills): each attempt takes `state` and
/// gives it back with its result.
pub(crate) async fn retry_with<S, T, E, Fut>(
    policy: RetryPolicy,
    wait: &mut impl Wait,
    mut state: S,
    mut attempt: impl FnMut(S, u32) -> Fut,
    mut failed: impl FnMut(&E, u32, Duration),
) -> Result<T, E>
where
    Fut: Future<Output = (S, Result<T, E>)>,
{
    let mut number = 1u32;
    loop {
        let (back, result) = attempt(state, number).await;
        state = back;
        match result {
            Ok(value) => return Ok(value),
            Err(error) => {
                let delay = policy.delay(number);
                failed(&error, number, delay);
                if !wait.wait(delay).await {
                    return Err(error);
                }
                number = number.saturating_add(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        for attempt in 1..30 {
            let d = policy.delay(attempt);
            let ceiling = (Duration::from_millis(100) * 2u32.pow((attempt - 1).min(16)))
                .min(Duration::from_secs(5));
            assert!(d <= ceiling && d >= ceiling / 2, "attempt {attempt}: {d:?}");
        }
    }

    const QUICK: RetryPolicy = RetryPolicy {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(2),
    };

    #[tokio::test]
    async fn retries_until_the_request_succeeds_and_tells_each_failure() {
        let mut failures = Vec::new();
        let result: Result<u32, String> = retry(
            QUICK,
            &mut Sleep,
            |n| async move {
                if n < 4 {
                    Err(format!("no {n}"))
                } else {
                    Ok(n)
                }
            },
            |error, n, _| failures.push((error.clone(), n)),
        )
        .await;
        assert_eq!(result, Ok(4));
        assert_eq!(
            failures,
            [("no 1".into(), 1), ("no 2".into(), 2), ("no 3".into(), 3)]
        );
    }

    #[tokio::test]
    async fn gives_up_with_the_last_error_once_told_to_stop() {
        let (stop_tx, mut stop) = watch::channel(false);
        let mut attempts = 0;
        // The state each attempt is lent: here, how many there were.
        let result: Result<(), u32> = retry_with(
            QUICK,
            &mut SleepUnlessStopped(&mut stop),
            &mut attempts,
            |attempts, n| {
                *attempts += 1;
                if n == 2 {
                    let _ = stop_tx.send(true);
                }
                async move { (attempts, Err(n)) }
            },
            |_, _, _| {},
        )
        .await;
        assert_eq!((result, attempts), (Err(2), 2));
        // Stopped already: the first failure is the last.
        let mut inner = Sleep;
        let result: Result<(), u32> = retry(
            QUICK,
            &mut UnlessStopped {
                stop: &stop,
                inner: &mut inner,
            },
            |n| async move { Err(n) },
            |_, _, _| {},
        )
        .await;
        assert_eq!(result, Err(1));
    }
}
