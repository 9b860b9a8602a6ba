//! `--max-per-minute`: at most N messages in any 60 seconds. Messages over the limit are not
//! sent (a burst of logins must not drain a Pushover plan's monthly quota); their records say
//! so and the count is logged.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

/// A sliding one-minute window of send times.
#[derive(Debug)]
pub struct RateLimit {
    max: usize,
    sent: VecDeque<Instant>,
}

impl RateLimit {
    /// At most `max` messages a minute.
    pub fn per_minute(max: u32) -> Self {
        RateLimit { max: max as usize, sent: VecDeque::new() }
    }

    /// True (and counted) when a message may go out at `now`.
    pub fn admit(&mut self, now: Instant) -> bool {
        while self.sent.front().is_some_and(|&t| now.duration_since(t) >= WINDOW) {
            self.sent.pop_front();
        }
        if self.sent.len() >= self.max {
            return false;
        }
        self.sent.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_n_per_sliding_minute() {
        let mut limit = RateLimit::per_minute(2);
        let t0 = Instant::now();
        assert!(limit.admit(t0));
        assert!(limit.admit(t0 + Duration::from_secs(10)));
        assert!(!limit.admit(t0 + Duration::from_secs(20)));
        assert!(limit.admit(t0 + Duration::from_secs(60)), "the first send left the window");
        assert!(!limit.admit(t0 + Duration::from_secs(61)));
        assert!(limit.admit(t0 + Duration::from_secs(71)));
    }
}
