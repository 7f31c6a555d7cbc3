//! How AWS calls are retried: one policy for every SDK client of every region.
//!
//! Adaptive retry (the SDK's client-side rate limiter slows down on throttling) with jittered
//! exponential backoff. Throttling, HTTP 5xx and transport failures (reset, timeout, a dropped
//! connection) are retried; everything else fails at once. The attempt budget is per call
//! (`max_retries`, default [`DEFAULT_MAX_RETRIES`]: with backoff capped at [`MAX_BACKOFF`] that
//! rides out several minutes of sustained throttling). The SDK's process-wide retry quota
//! (a token bucket that stops all retries of a service after ~100 failures) is replaced by an
//! unlimited one per client: a long apply against a throttling account must not start failing
//! every call once the quota is spent, and the attempt cap already bounds each call.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_smithy_runtime::client::retries::{ClientRateLimiter, RetryPartition, TokenBucket};

/// Retries after the first attempt when the provider block sets no `max_retries` (and
/// `AWS_MAX_ATTEMPTS` is unset).
pub const DEFAULT_MAX_RETRIES: u32 = 25;
/// The first retry waits up to this long (jittered), doubling per attempt...
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// ...up to this cap.
pub const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// The retry configuration for `max_attempts` attempts in all (first try included).
pub fn retry_config(max_attempts: u32) -> RetryConfig {
    RetryConfig::adaptive()
        .with_max_attempts(max_attempts.max(1))
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_max_backoff(MAX_BACKOFF)
}

/// A retry partition of its own for one service client: an unlimited retry quota and its own
/// adaptive rate limiter (so a throttled EC2 does not slow SSM down).
pub fn partition(service: &str, region: &str) -> RetryPartition {
    RetryPartition::custom(format!("strata-{service}-{region}"))
        .token_bucket(TokenBucket::unlimited())
        .client_rate_limiter(ClientRateLimiter::default())
        .build()
}

/// The worst-case time the SDK may spend on one call's retries (backoff only), for messages.
pub fn worst_case_backoff(max_attempts: u32) -> Duration {
    (1..max_attempts.max(1))
        .map(|n| {
            let exp = INITIAL_BACKOFF.as_secs_f64() * 2f64.powi(n.min(30) as i32 - 1);
            Duration::from_secs_f64(exp.min(MAX_BACKOFF.as_secs_f64()))
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_budget_rides_out_minutes_of_throttling() {
        let c = retry_config(DEFAULT_MAX_RETRIES + 1);
        assert_eq!(c.max_attempts(), DEFAULT_MAX_RETRIES + 1);
        assert_eq!(c.mode(), aws_config::retry::RetryMode::Adaptive);
        assert!(worst_case_backoff(DEFAULT_MAX_RETRIES + 1) >= Duration::from_secs(5 * 60));
        assert_eq!(retry_config(0).max_attempts(), 1);
    }
}
