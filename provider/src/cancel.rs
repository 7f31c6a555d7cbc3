//! Cancellation that reaches every wait: StopProvider (Terraform's answer to Ctrl-C) cancels a
//! token, and the framework runs each resource operation inside [`scope`] so that every poll
//! loop, retry loop and SDK retry backoff under it can see that token without it being passed
//! through every signature. Outside a scope nothing is ever cancelled.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

tokio::task_local! {
    static TOKEN: CancellationToken;
}

/// Runs `fut` with `token` as the cancellation token every wait under it obeys.
pub async fn scope<F: Future>(token: CancellationToken, fut: F) -> F::Output {
    TOKEN.scope(token, fut).await
}

/// True once the current operation has been cancelled.
pub fn is_cancelled() -> bool {
    TOKEN.try_with(|t| t.is_cancelled()).unwrap_or(false)
}

/// The current operation's token, if it runs in a [`scope`].
pub fn current() -> Option<CancellationToken> {
    TOKEN.try_with(|t| t.clone()).ok()
}

/// Sleeps for `d`, or returns `false` at once when the operation is cancelled.
pub async fn sleep(d: Duration) -> bool {
    match current() {
        Some(t) => tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = t.cancelled() => false,
        },
        None => {
            tokio::time::sleep(d).await;
            true
        }
    }
}

/// The SDK's sleep (used for retry backoff): ends early once cancelled, so the
/// [`CancelInterceptor`] can stop the retry loop instead of a backoff running out first.
#[derive(Debug, Clone, Default)]
pub struct CancellableSleep;

impl aws_smithy_async::rt::sleep::AsyncSleep for CancellableSleep {
    fn sleep(&self, d: Duration) -> aws_smithy_async::rt::sleep::Sleep {
        // Read the token now: the SDK creates the sleep inside the operation's task.
        let token = current();
        aws_smithy_async::rt::sleep::Sleep::new(async move {
            match token {
                Some(t) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = t.cancelled() => {}
                    }
                }
                None => tokio::time::sleep(d).await,
            }
        })
    }
}

/// Fails an SDK attempt before it is sent once the operation is cancelled, which ends the
/// SDK's retry loop (an interceptor error is not retried).
#[derive(Debug, Clone, Default)]
pub struct CancelInterceptor;

impl aws_smithy_runtime_api::client::interceptors::Intercept for CancelInterceptor {
    fn name(&self) -> &'static str {
        "StrataCancel"
    }

    fn read_before_attempt(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if is_cancelled() {
            return Err("cancelled: Terraform asked the provider to stop".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleep_ends_when_the_scope_is_cancelled() {
        let t = CancellationToken::new();
        let t2 = t.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            t2.cancel();
        });
        let start = std::time::Instant::now();
        let finished = scope(t, sleep(Duration::from_secs(30))).await;
        assert!(!finished);
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(!is_cancelled(), "outside a scope nothing is cancelled");
        assert!(sleep(Duration::from_millis(1)).await);
    }
}
