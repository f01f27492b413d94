//! The router's legacy sessions: what a client's `Mcp-Session-Id` means.
//!
//! The router mints the session ids its clients see. Each one names a
//! [`Session`]: the server and the user it belongs to (so another user's
//! token with it is 404, in every tenancy: a shared instance serves everyone
//! under one instance id, so the instance cannot be what tells users apart),
//! and the instance session it currently maps to. The instance's own id
//! never reaches the client, which is what lets a session outlive its
//! instance: when the instance stopped (idle) or crashed, the router starts
//! it again, replays the session's recorded `initialize`,
//! `notifications/initialized` and resource subscriptions, and maps the
//! client's id to the new instance session.
//!
//! The table is bounded: at most [`SessionLimits::max_sessions`] sessions
//! (the least recently used go first) and [`SessionLimits::max_per_user`]
//! per (server, user); a session unused for [`SessionLimits::idle`] ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// How many sessions the router keeps, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub max_sessions: usize,
    pub max_per_user: usize,
    pub idle: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_sessions: 100_000,
            max_per_user: 1_000,
            idle: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// Largest `initialize` (or `resources/subscribe`) body kept for replay.
pub const MAX_RECORDED: usize = 64 * 1024;
/// Most resource subscriptions replayed per session.
pub const MAX_SUBSCRIPTIONS: usize = 256;

/// Who a session belongs to: a server and a user (`None`: anonymous, on a
/// public server).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    pub server: String,
    pub user: Option<String>,
}

/// Where a session currently lives: an instance session, in one run
/// (`generation`) of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub session_id: String,
    pub generation: u64,
}

/// One client session.
pub struct Session {
    pub id: String,
    pub owner: Owner,
    /// The client's `initialize` (body and `MCP-Protocol-Version`), replayed
    /// on a new instance; `None` when it was too large to keep.
    pub initialize: Option<Recorded>,
    /// Held while the session is (re)opened on an instance, so concurrent
    /// requests after a restart open it once.
    pub upstream: tokio::sync::Mutex<Upstream>,
    state: Mutex<SessionState>,
}

/// A request as the client sent it, for replay.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub body: Bytes,
    pub protocol_version: Option<String>,
}

#[derive(Default)]
struct SessionState {
    initialized: bool,
    /// `resources/subscribe` bodies, by resource URI.
    subscriptions: Vec<(String, Bytes)>,
}

impl Session {
    fn state(&self) -> MutexGuard<'_, SessionState> {
        hangar_common::sync::lock(&self.state)
    }

    /// The client sent `notifications/initialized`.
    pub fn mark_initialized(&self) {
        self.state().initialized = true;
    }

    pub fn initialized(&self) -> bool {
        self.state().initialized
    }

    /// Remembers a `resources/subscribe` (replayed on a new instance).
    pub fn subscribe(&self, uri: &str, body: &Bytes) {
        if body.len() > MAX_RECORDED {
            return;
        }
        let mut state = self.state();
        state.subscriptions.retain(|(u, _)| u != uri);
        if state.subscriptions.len() < MAX_SUBSCRIPTIONS {
            state.subscriptions.push((uri.to_owned(), body.clone()));
        }
    }

    pub fn unsubscribe(&self, uri: &str) {
        self.state().subscriptions.retain(|(u, _)| u != uri);
    }

    pub fn subscriptions(&self) -> Vec<Bytes> {
        self.state()
            .subscriptions
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }
}

struct Entry {
    session: Arc<Session>,
    last_used: Instant,
}

/// Every live client session of this router.
pub struct Sessions {
    limits: SessionLimits,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Entry>,
    per_owner: HashMap<Owner, usize>,
}

impl Inner {
    fn remove(&mut self, id: &str) -> Option<Arc<Session>> {
        let entry = self.by_id.remove(id)?;
        if let Some(n) = self.per_owner.get_mut(&entry.session.owner) {
            *n -= 1;
            if *n == 0 {
                self.per_owner.remove(&entry.session.owner);
            }
        }
        Some(entry.session)
    }

    /// The least recently used session, of `owner` if given.
    fn oldest(&self, owner: Option<&Owner>) -> Option<String> {
        self.by_id
            .iter()
            .filter(|(_, e)| owner.is_none_or(|o| &e.session.owner == o))
            .min_by_key(|(_, e)| e.last_used)
            .map(|(id, _)| id.clone())
    }
}

/// What a lookup found.
pub enum Lookup {
    Found(Arc<Session>),
    /// Unknown, ended, expired, or another owner's: the client sees 404.
    NotFound,
}

impl Sessions {
    pub fn new(limits: SessionLimits) -> Sessions {
        Sessions {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// A table whose expired sessions are purged every minute (for as long
    /// as the table lives).
    pub fn start(limits: SessionLimits) -> Arc<Sessions> {
        let sessions = Arc::new(Sessions::new(limits));
        let weak = Arc::downgrade(&sessions);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let Some(sessions) = weak.upgrade() else {
                    return;
                };
                let n = sessions.purge_expired();
                if n > 0 {
                    tracing::debug!(sessions = n, "expired sessions purged");
                }
            }
        });
        sessions
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        hangar_common::sync::lock(&self.inner)
    }

    /// Starts a session for `owner` that lives in `upstream`, and returns
    /// the id its client will use.
    pub fn open(
        &self,
        owner: Owner,
        upstream: Upstream,
        initialize: Option<Recorded>,
    ) -> Arc<Session> {
        let session = Arc::new(Session {
            id: hangar_common::random::hex(16),
            owner,
            initialize,
            upstream: tokio::sync::Mutex::new(upstream),
            state: Mutex::new(SessionState::default()),
        });
        let mut inner = self.inner();
        while inner.per_owner.get(&session.owner).copied().unwrap_or(0) >= self.limits.max_per_user
        {
            match inner.oldest(Some(&session.owner)) {
                Some(id) => inner.remove(&id),
                None => break,
            };
        }
        while inner.by_id.len() >= self.limits.max_sessions {
            match inner.oldest(None) {
                Some(id) => inner.remove(&id),
                None => break,
            };
        }
        *inner.per_owner.entry(session.owner.clone()).or_default() += 1;
        inner.by_id.insert(
            session.id.clone(),
            Entry {
                session: session.clone(),
                last_used: Instant::now(),
            },
        );
        session
    }

    /// The session `id` if it belongs to `owner` and has not expired.
    pub fn lookup(&self, id: &str, owner: &Owner) -> Lookup {
        let mut inner = self.inner();
        let Some(entry) = inner.by_id.get_mut(id) else {
            return Lookup::NotFound;
        };
        if &entry.session.owner != owner {
            // Another user's (or server's): as if it did not exist, and
            // untouched (bob's attempts do not keep alice's session alive).
            return Lookup::NotFound;
        }
        if entry.last_used.elapsed() >= self.limits.idle {
            inner.remove(id);
            return Lookup::NotFound;
        }
        entry.last_used = Instant::now();
        Lookup::Found(entry.session.clone())
    }

    /// Ends a session (the client's DELETE).
    pub fn end(&self, id: &str) -> Option<Arc<Session>> {
        self.inner().remove(id)
    }

    /// Drops sessions idle past the limit.
    pub fn purge_expired(&self) -> usize {
        let mut inner = self.inner();
        let idle = self.limits.idle;
        let expired: Vec<String> = inner
            .by_id
            .iter()
            .filter(|(_, e)| e.last_used.elapsed() >= idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            inner.remove(id);
        }
        expired.len()
    }

    pub fn len(&self) -> usize {
        self.inner().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(user: &str) -> Owner {
        Owner {
            server: "s".into(),
            user: Some(user.into()),
        }
    }

    fn upstream() -> Upstream {
        Upstream {
            session_id: "inner".into(),
            generation: 1,
        }
    }

    #[test]
    fn a_session_is_found_only_by_its_owner() {
        let sessions = Sessions::new(SessionLimits::default());
        let s = sessions.open(owner("alice"), upstream(), None);
        assert!(matches!(
            sessions.lookup(&s.id, &owner("alice")),
            Lookup::Found(_)
        ));
        assert!(matches!(
            sessions.lookup(&s.id, &owner("bob")),
            Lookup::NotFound
        ));
        let other_server = Owner {
            server: "t".into(),
            user: Some("alice".into()),
        };
        assert!(matches!(
            sessions.lookup(&s.id, &other_server),
            Lookup::NotFound
        ));
        let anonymous = Owner {
            server: "s".into(),
            user: None,
        };
        assert!(matches!(
            sessions.lookup(&s.id, &anonymous),
            Lookup::NotFound
        ));
        assert!(matches!(
            sessions.lookup("made-up", &owner("alice")),
            Lookup::NotFound
        ));
        sessions.end(&s.id);
        assert!(matches!(
            sessions.lookup(&s.id, &owner("alice")),
            Lookup::NotFound
        ));
    }

    #[test]
    fn the_table_is_bounded_per_user_and_in_all_and_the_oldest_go_first() {
        let sessions = Sessions::new(SessionLimits {
            max_sessions: 5,
            max_per_user: 3,
            idle: Duration::from_secs(60),
        });
        let a: Vec<_> = (0..4)
            .map(|_| sessions.open(owner("alice"), upstream(), None))
            .collect();
        assert_eq!(sessions.len(), 3, "alice keeps at most 3");
        assert!(matches!(
            sessions.lookup(&a[0].id, &owner("alice")),
            Lookup::NotFound
        ));
        assert!(matches!(
            sessions.lookup(&a[3].id, &owner("alice")),
            Lookup::Found(_)
        ));
        // Touch a[1] so that a[2] is the least recently used.
        assert!(matches!(
            sessions.lookup(&a[1].id, &owner("alice")),
            Lookup::Found(_)
        ));
        let b: Vec<_> = (0..3)
            .map(|_| sessions.open(owner("bob"), upstream(), None))
            .collect();
        assert_eq!(sessions.len(), 5);
        assert!(matches!(
            sessions.lookup(&a[2].id, &owner("alice")),
            Lookup::NotFound
        ));
        for s in &b {
            assert!(matches!(
                sessions.lookup(&s.id, &owner("bob")),
                Lookup::Found(_)
            ));
        }
    }

    #[test]
    fn idle_sessions_expire() {
        let sessions = Sessions::new(SessionLimits {
            max_sessions: 10,
            max_per_user: 10,
            idle: Duration::from_millis(20),
        });
        let s = sessions.open(owner("alice"), upstream(), None);
        let t = sessions.open(owner("alice"), upstream(), None);
        std::thread::sleep(Duration::from_millis(30));
        assert!(matches!(
            sessions.lookup(&s.id, &owner("alice")),
            Lookup::NotFound
        ));
        assert_eq!(sessions.purge_expired(), 1);
        assert!(matches!(
            sessions.lookup(&t.id, &owner("alice")),
            Lookup::NotFound
        ));
        assert!(sessions.is_empty());
    }

    #[test]
    fn subscriptions_are_kept_once_per_uri_and_bounded() {
        let sessions = Sessions::new(SessionLimits::default());
        let s = sessions.open(owner("alice"), upstream(), None);
        s.subscribe("test://a", &Bytes::from_static(b"1"));
        s.subscribe("test://a", &Bytes::from_static(b"2"));
        s.subscribe("test://b", &Bytes::from_static(b"3"));
        assert_eq!(
            s.subscriptions(),
            vec![Bytes::from_static(b"2"), Bytes::from_static(b"3")]
        );
        s.unsubscribe("test://a");
        assert_eq!(s.subscriptions(), vec![Bytes::from_static(b"3")]);
        s.subscribe("test://big", &Bytes::from(vec![b'x'; MAX_RECORDED + 1]));
        assert_eq!(s.subscriptions().len(), 1);
    }
}
