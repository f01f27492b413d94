//! Password hashes (argon2id) and the bound on how many run at once.
//!
//! One argon2id hash with the default parameters takes 19 MiB and tens of
//! milliseconds of CPU. Unbounded, 24 concurrent sign-ins ran 24 at once on
//! the blocking pool and raised the router's resident memory by 436 MiB,
//! which the allocator kept. So every hash and verification on a request
//! path goes through [`Passwords`]: at most [`HASHES_AT_ONCE`] run, at most
//! [`HASH_QUEUE`] more wait for a turn, and the rest are refused at once
//! with [`Busy`] (the sign-in page answers 503 with `Retry-After`).
//!
//! The hashes run off the async threads, like `spawn_blocking`, but on
//! [`HASHES_AT_ONCE`] threads of their own, and each hash hands its freed
//! memory back to the OS ([`give_memory_back`]): with 2 at once but without
//! that, glibc kept +114 to +190 MiB after 24 sign-ins.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

/// Hashes that run at once (this box has 2 cores; each hash is one core's
/// work and 19 MiB).
pub const HASHES_AT_ONCE: usize = 2;
/// Checks that may wait for a turn besides those running; past it, [`Busy`].
pub const HASH_QUEUE: usize = 8;
/// What a refused sign-in is told (`Retry-After`, seconds).
pub const RETRY_AFTER_SECS: u64 = 2;

/// Too many password checks are running or waiting: try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks at once; try again in a moment")]
pub struct Busy;

/// Runs password hashes and verifications, a bounded number at once.
pub struct Passwords {
    /// Work for the hashing threads. `None` when no thread could be
    /// started (every check is then [`Busy`]).
    jobs: Option<Sender<Job>>,
    /// Places to run or wait (threads plus the queue): a check holds one
    /// until its hash has finished.
    places: Arc<Semaphore>,
    stats: Arc<Stats>,
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Stats {
    running: AtomicUsize,
    peak: AtomicUsize,
    refused: AtomicU64,
}

/// Counts a hash as running for as long as it lives (also on a panic).
struct Running<'a>(&'a Stats);

impl<'a> Running<'a> {
    fn start(stats: &'a Stats) -> Running<'a> {
        let now = stats.running.fetch_add(1, Ordering::SeqCst) + 1;
        stats.peak.fetch_max(now, Ordering::SeqCst);
        Running(stats)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Default for Passwords {
    fn default() -> Self {
        Passwords::new(HASHES_AT_ONCE, HASH_QUEUE)
    }
}

impl Passwords {
    /// `at_once` hashes run (on as many threads of their own), `queue`
    /// more may wait. The threads end when this is dropped.
    pub fn new(at_once: usize, queue: usize) -> Passwords {
        let at_once = at_once.max(1);
        let (jobs, inbox) = channel::<Job>();
        let inbox = Arc::new(Mutex::new(inbox));
        let mut started = 0;
        for i in 0..at_once {
            let inbox = inbox.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("hangar-argon2-{i}"))
                .spawn(move || work_through(&inbox));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::error!("starting a password hashing thread: {e}"),
            }
        }
        Passwords {
            jobs: (started > 0).then_some(jobs),
            places: Arc::new(Semaphore::new(started + queue)),
            stats: Arc::default(),
        }
    }

    /// Whether `password` matches `hash`. `None` (no such user, or no
    /// password) verifies against a decoy hash, so that a wrong name takes
    /// as long as a wrong password; it never matches.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, Busy> {
        let outcome = self
            .run(move || match hash {
                Some(h) => verify_password(&password, &h),
                None => {
                    verify_password(&password, decoy_hash());
                    false
                }
            })
            .await?;
        Ok(outcome.unwrap_or_else(|e| {
            tracing::error!("a password check failed: {e}");
            false
        }))
    }

    /// An argon2id hash of `password`.
    pub async fn hash(&self, password: String) -> Result<Result<String, String>, Busy> {
        let outcome = self.run(move || hash_password(&password)).await?;
        Ok(outcome.unwrap_or_else(Err))
    }

    /// Runs `work` on a hashing thread: at once if one is free, after the
    /// checks ahead of it if the queue has room, else [`Busy`]. A caller
    /// that goes away (a browser that disconnects) leaves its hash to
    /// finish on its thread: it still counts against the bound.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<Result<T, String>, Busy> {
        let refuse = || {
            self.stats.refused.fetch_add(1, Ordering::SeqCst);
            Busy
        };
        let jobs = self.jobs.as_ref().ok_or_else(refuse)?;
        let place = self
            .places
            .clone()
            .try_acquire_owned()
            .map_err(|_| refuse())?;
        let (answer, outcome) = tokio::sync::oneshot::channel();
        let stats = self.stats.clone();
        let job: Job = Box::new(move || {
            let _place = place;
            let _running = Running::start(&stats);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                .map_err(|_| "the hash panicked".to_owned());
            give_memory_back();
            let _ = answer.send(result);
        });
        jobs.send(job).map_err(|_| refuse())?;
        Ok(outcome
            .await
            .unwrap_or_else(|_| Err("the hashing thread is gone".into())))
    }

    /// Hashes running now.
    pub fn running(&self) -> usize {
        self.stats.running.load(Ordering::SeqCst)
    }

    /// The most hashes that ever ran at once.
    pub fn peak_running(&self) -> usize {
        self.stats.peak.load(Ordering::SeqCst)
    }

    /// How many checks were refused with [`Busy`].
    pub fn refused(&self) -> u64 {
        self.stats.refused.load(Ordering::SeqCst)
    }
}

/// Returns the hash's freed 19 MiB to the operating system. glibc's malloc
/// raises its mmap threshold after the first large free, so later hashes'
/// memory comes from the heap, and between other allocations it stays
/// resident: measured, +114 to +190 MiB after 24 concurrent sign-ins even
/// with 2 hashes at once, +0 with this. A no-op off glibc.
fn give_memory_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's own
    // arenas; it takes no pointers and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A hashing thread: takes the next job until the sender is dropped.
fn work_through(inbox: &Mutex<Receiver<Job>>) {
    loop {
        let job = inbox.lock().unwrap_or_else(|p| p.into_inner()).recv();
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// A hash to verify against when there is none, computed once (on a
/// hashing thread, inside a turn).
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy").unwrap_or_default())
}

/// An argon2id hash of a password (default parameters: 19 MiB, 2 passes).
/// Blocking; on request paths use [`Passwords::hash`].
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches an argon2 PHC string. Blocking; on request
/// paths use [`Passwords::verify`].
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    /// Two turns and one place in the queue: two run, one waits, the
    /// fourth is refused at once; never more than two run.
    #[tokio::test]
    async fn at_most_the_turns_run_and_the_queue_is_bounded() {
        let gate = Arc::new(Passwords::new(2, 1));
        let open = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let (gate, open) = (gate.clone(), open.clone());
                tokio::spawn(async move {
                    gate.run(move || {
                        let (lock, cv) = &*open;
                        let mut is_open = lock.lock().unwrap();
                        while !*is_open {
                            is_open = cv.wait(is_open).unwrap();
                        }
                    })
                    .await
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while gate.running() < 2 {
            assert!(Instant::now() < deadline, "two should be running");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Give the third time to take its place in the queue.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(gate.running(), 2, "the third waits for a turn");
        assert_eq!(gate.run(|| ()).await.unwrap_err(), Busy);
        assert_eq!(gate.refused(), 1);
        *open.0.lock().unwrap() = true;
        open.1.notify_all();
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
        assert_eq!(gate.peak_running(), 2);
        // A hashing thread counts itself out just after it hands back the
        // result: wait (bounded) for the last one.
        let deadline = Instant::now() + Duration::from_secs(5);
        while gate.running() != 0 {
            assert!(
                Instant::now() < deadline,
                "still running: {}",
                gate.running()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(gate.run(|| ()).await.is_ok(), "free again");
    }
}
