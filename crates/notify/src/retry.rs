//! Retrying a delivery: exponential backoff between attempts, waits that a stop (SIGTERM)
//! cuts short.

use std::time::Duration;

use opsline::Shutdown;

/// How often and how patiently to retry a delivery.
#[derive(Debug, Clone)]
pub struct Retry {
    /// Retries after the first attempt.
    pub retries: u32,
    /// The wait before the first retry; it doubles with each further retry.
    pub delay: Duration,
    /// The longest `Retry-After` worth waiting for; a longer one fails the message at once.
    pub max_retry_after: Duration,
    /// Cuts waits short when a stop is asked for.
    pub shutdown: Shutdown,
}

/// The longest backoff between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Retry {
    /// The wait before retry number `attempt` (1 for the first retry).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.delay.saturating_mul(factor).min(MAX_BACKOFF)
    }

    /// True when another attempt may follow attempt number `attempts` (1-based).
    pub fn may_retry(&self, attempts: u32) -> bool {
        attempts <= self.retries && !self.shutdown.requested()
    }

    /// Waits `duration`; false when a stop was asked for meanwhile.
    pub fn wait(&self, duration: Duration) -> bool {
        crossbeam_channel::select! {
            recv(self.shutdown.receiver()) -> _ => false,
            default(duration) => !self.shutdown.requested(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry() -> Retry {
        Retry {
            retries: 3,
            delay: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(60),
            shutdown: Shutdown::detached(),
        }
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let r = retry();
        assert_eq!(r.backoff(1), Duration::from_millis(500));
        assert_eq!(r.backoff(3), Duration::from_secs(2));
        assert_eq!(r.backoff(30), MAX_BACKOFF);
        assert!(r.may_retry(3) && !r.may_retry(4));
    }

    #[test]
    fn a_stop_cuts_waits_and_retries_short() {
        let r = retry();
        r.shutdown.request();
        assert!(!r.wait(Duration::from_secs(30)));
        assert!(!r.may_retry(1));
    }
}
