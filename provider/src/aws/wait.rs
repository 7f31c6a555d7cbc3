//! Waiting for AWS objects: exponential backoff with an overall deadline, ended early when
//! Terraform cancels the operation (see `crate::cancel`).

use std::future::Future;
use std::time::{Duration, Instant};

use super::error::AwsError;

/// The delays between polls: `initial`, growing by `factor`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub factor: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(15),
            factor: 1.7,
        }
    }
}

impl Backoff {
    /// The delay before poll number `attempt` (0-based), before the deadline is considered.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.factor.powi(attempt.min(64) as i32);
        let d = self.initial.as_secs_f64() * exp;
        Duration::from_secs_f64(d.min(self.max.as_secs_f64()))
    }

    /// The delay before poll `attempt`, shortened so it never sleeps past `deadline`.
    pub fn delay_within(&self, attempt: u32, now: Instant, deadline: Instant) -> Option<Duration> {
        let left = deadline.checked_duration_since(now)?;
        if left.is_zero() {
            return None;
        }
        Some(self.delay(attempt).min(left))
    }
}

/// One poll's verdict.
#[derive(Debug)]
pub enum Poll<T> {
    Ready(T),
    /// Not yet; the string is the current state, for the timeout message.
    Pending(String),
}

/// Polls `check` until it is `Ready`, an error, or `timeout` passes.
pub async fn wait_for<T, F, Fut>(
    object: &str,
    wanted: &str,
    timeout: Duration,
    backoff: Backoff,
    mut check: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, AwsError>>,
{
    let start = Instant::now();
    let deadline = start + timeout;
    let mut attempt = 0u32;
    loop {
        let last_state = match check().await? {
            Poll::Ready(v) => return Ok(v),
            Poll::Pending(s) => s,
        };
        match backoff.delay_within(attempt, Instant::now(), deadline) {
            Some(d) => {
                if !crate::cancel::sleep(d).await {
                    return Err(AwsError::Cancelled {
                        waiting_for: format!("{object} to become {wanted}"),
                    });
                }
            }
            None => {
                return Err(AwsError::Timeout {
                    object: object.into(),
                    wanted: wanted.into(),
                    last_state,
                    waited: start.elapsed(),
                });
            }
        }
        attempt += 1;
    }
}

/// Retries `op` while `retry_if` says the error may clear (IAM propagation, dependency
/// violations), with backoff, until `timeout`.
pub async fn retry_while<T, F, Fut>(
    timeout: Duration,
    backoff: Backoff,
    retry_if: impl Fn(&AwsError) -> bool,
    mut op: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let deadline = Instant::now() + timeout;
    let mut attempt = 0u32;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if retry_if(&e) => match backoff.delay_within(attempt, Instant::now(), deadline)
            {
                Some(d) => {
                    tracing::debug!(error = %e, ?d, "retrying");
                    if !crate::cancel::sleep(d).await {
                        return Err(e);
                    }
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
            factor: 2.0,
        };
        let d: Vec<u64> = (0..6).map(|i| b.delay(i).as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(b.delay(10_000), Duration::from_secs(10));
    }

    #[test]
    fn backoff_never_sleeps_past_the_deadline() {
        let b = Backoff::default();
        let now = Instant::now();
        let d = b
            .delay_within(20, now, now + Duration::from_millis(100))
            .unwrap();
        assert!(d <= Duration::from_millis(100));
        assert_eq!(b.delay_within(0, now + Duration::from_secs(1), now), None);
    }

    #[tokio::test]
    async fn wait_times_out_with_last_state() {
        let fast = Backoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(10),
            factor: 2.0,
        };
        let mut polls = 0;
        let r: Result<(), _> = wait_for(
            "volume vol-1",
            "available",
            Duration::from_millis(60),
            fast,
            || {
                polls += 1;
                async { Ok(Poll::Pending("in-use".to_string())) }
            },
        )
        .await;
        let e = r.unwrap_err();
        assert!(matches!(e, AwsError::Timeout { .. }));
        assert!(e.to_string().contains("in-use") && e.to_string().contains("vol-1"));
        assert!(polls >= 3, "polled {polls} times");

        let mut n = 0;
        let v = wait_for("x", "ready", Duration::from_secs(5), fast, || {
            n += 1;
            let k = n;
            async move {
                Ok(if k >= 3 {
                    Poll::Ready(k)
                } else {
                    Poll::Pending("no".into())
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 3);

        // StopProvider: a wait with 10 minutes left ends at once.
        let token = tokio_util::sync::CancellationToken::new();
        let t2 = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            t2.cancel();
        });
        let start = Instant::now();
        let slow = Backoff {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(5),
            factor: 1.0,
        };
        let r: Result<(), _> = crate::cancel::scope(
            token,
            wait_for(
                "node i-1",
                "ready",
                Duration::from_secs(600),
                slow,
                || async { Ok(Poll::Pending("booting".to_string())) },
            ),
        )
        .await;
        assert!(matches!(r, Err(AwsError::Cancelled { .. })), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn retry_stops_on_errors_that_will_not_clear() {
        let fast = Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(2),
            factor: 2.0,
        };
        let mut calls = 0;
        let r: Result<(), _> = retry_while(
            Duration::from_secs(5),
            fast,
            |e| e.code() == Some("DependencyViolation"),
            || {
                calls += 1;
                let code = if calls < 3 {
                    "DependencyViolation"
                } else {
                    "AuthFailure"
                };
                async move { Err(AwsError::api("op", "obj", code, "m")) }
            },
        )
        .await;
        assert_eq!(r.unwrap_err().code(), Some("AuthFailure"));
        assert_eq!(calls, 3);
    }
}
