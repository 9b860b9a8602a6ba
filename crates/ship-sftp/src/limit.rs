//! `--bwlimit`: one rate shared by every transfer thread.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A pacing clock: each slice of bytes reserves its share of time after the previous ones.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_sec: u64,
    next: Mutex<Option<Instant>>,
}

impl RateLimit {
    /// A limit of `bytes_per_sec`.
    pub fn new(bytes_per_sec: u64) -> Self {
        RateLimit { bytes_per_sec: bytes_per_sec.max(1), next: Mutex::new(None) }
    }

    /// The slice size that keeps the pace smooth: about an eighth of a second's worth.
    pub fn slice(&self, max: usize) -> usize {
        usize::try_from(self.bytes_per_sec / 8).unwrap_or(max).clamp(4096, max)
    }

    /// Waits until `bytes` more may be sent.
    pub fn take(&self, bytes: usize) {
        let wait = self.reserve(bytes, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Reserves the time `bytes` take and returns how long to wait, seen from `now`.
    fn reserve(&self, bytes: usize, now: Instant) -> Duration {
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let start = next.filter(|t| *t > now).unwrap_or(now);
        *next = Some(start + cost);
        start - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_wait_for_their_share() {
        let limit = RateLimit::new(1 << 20);
        let now = Instant::now();
        let waits: Vec<u128> = (0..4).map(|_| limit.reserve(64 << 10, now).as_millis()).collect();
        assert_eq!(waits, [0, 62, 125, 187]);
        let later = now + Duration::from_secs(10);
        assert_eq!(limit.reserve(64 << 10, later), Duration::ZERO, "idle time is not banked");
        assert_eq!(limit.slice(2 << 20), 128 << 10);
    }
}
