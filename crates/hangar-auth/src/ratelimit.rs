//! Fixed-window rate limits for the sign-in, token and registration
//! endpoints: enough to make password guessing and registration floods slow,
//! with memory bounded by the number of keys kept.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys tracked at once; past it, expired windows are dropped (and if
/// that is not enough, everything: a flood of distinct keys must not grow
/// memory without bound).
const MAX_KEYS: usize = 100_000;

pub struct RateLimiter {
    limit: u32,
    window: Duration,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> RateLimiter {
        RateLimiter {
            limit,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt for `key`; `Err(retry_after)` when over the limit.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= MAX_KEYS {
            let window = self.window;
            windows.retain(|_, (start, _)| start.elapsed() < window);
            if windows.len() >= MAX_KEYS {
                windows.clear();
            }
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
}
