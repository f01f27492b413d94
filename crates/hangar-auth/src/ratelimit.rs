//! Fixed-window rate limits for the sign-in, token and registration
//! endpoints: enough to make password guessing and registration floods slow,
//! with memory bounded by the number of keys kept.
//!
//! When the table is full, expired windows go first, then the windows that
//! have counted the fewest attempts, oldest first. Filling the table with
//! junk keys (one attempt each) therefore evicts junk: an attacker's own
//! counter, at its limit, is the last to go. To evict it they would need
//! [`MAX_KEYS`] keys each at the limit, within one window.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys tracked at once (a flood of distinct keys must not grow memory
/// without bound).
pub const MAX_KEYS: usize = 100_000;
/// The share of a full table evicted at once (1/16): one pass over the
/// table makes room for many new keys, so a flood costs O(1) per key.
const EVICT_SHARE: usize = 16;

pub struct RateLimiter {
    limit: u32,
    window: Duration,
    max_keys: usize,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> RateLimiter {
        RateLimiter::with_capacity(limit, window, MAX_KEYS)
    }

    /// A limiter that tracks at most `max_keys` keys at once.
    pub fn with_capacity(limit: u32, window: Duration, max_keys: usize) -> RateLimiter {
        RateLimiter {
            limit,
            window,
            max_keys: max_keys.max(1),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt for `key`; `Err(retry_after)` when over the limit.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= self.max_keys && !windows.contains_key(key) {
            self.make_room(&mut windows);
        }
        let entry = windows.entry(key.to_owned()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        if entry.1 >= self.limit {
            return Err(self.window.saturating_sub(entry.0.elapsed()));
        }
        entry.1 += 1;
        Ok(())
    }

    /// Drops expired windows; if the table is still full, the windows with
    /// the fewest attempts (oldest first among equals).
    fn make_room(&self, windows: &mut HashMap<String, (Instant, u32)>) {
        let window = self.window;
        windows.retain(|_, (start, _)| start.elapsed() < window);
        if windows.len() < self.max_keys {
            return;
        }
        let evict = (self.max_keys / EVICT_SHARE).max(1);
        let mut order: Vec<(u32, Instant, &String)> = windows
            .iter()
            .map(|(k, (start, count))| (*count, *start, k))
            .collect();
        order.select_nth_unstable_by_key(evict - 1, |(count, start, _)| (*count, *start));
        let doomed: Vec<String> = order[..evict]
            .iter()
            .map(|(_, _, k)| (*k).clone())
            .collect();
        for key in doomed {
            windows.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_per_key() {
        let l = RateLimiter::new(2, Duration::from_secs(60));
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        let wait = l.check("a").unwrap_err();
        assert!(wait > Duration::from_secs(50));
        assert!(l.check("b").is_ok());
    }

    /// A flood of fresh keys (junk addresses or user names) fills the table;
    /// the attacker's own counter, at its limit, must survive it.
    #[test]
    fn a_full_table_keeps_the_counters_that_matter() {
        let l = RateLimiter::with_capacity(3, Duration::from_secs(60), 100);
        for _ in 0..3 {
            assert!(l.check("attacker").is_ok());
        }
        assert!(l.check("attacker").is_err());
        for i in 0..1000 {
            let _ = l.check(&format!("junk-{i}"));
            assert!(
                l.check("attacker").is_err(),
                "the attacker's counter was reset after {i} junk keys"
            );
        }
        let len = l.windows.lock().unwrap().len();
        assert!(len <= 100, "the table is bounded: {len}");
        // A key that is new now still gets its own fresh window.
        assert!(l.check("newcomer").is_ok());
    }
}
