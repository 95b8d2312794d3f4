//! Signed-in browsers: a bounded, server-side map from a random session id (the cookie's
//! value) to its role, its CSRF token and its expiry.
//!
//! Invariants:
//! - The token a person typed is never kept: a session holds the [`Role`] it granted.
//! - Ids and CSRF tokens are 128 random bits each (the thread-local CSPRNG of `rand`), hex.
//! - A session ends after [`IDLE`] without a request or [`ABSOLUTE`] after its login,
//!   whichever comes first, or on logout; an ended session is never found again.
//! - At most `max` sessions exist: a login when full drops the one closest to expiry, so a
//!   flood of logins (each needs a valid token) cannot grow memory.
//! - CSRF tokens are compared in constant time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use subtle::ConstantTimeEq;

use crate::host::Role;

/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after its login whatever happens.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 60 * 60);

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// What it may do.
    pub role: Role,
    /// The token its pages send in `X-CSRF-Token` with every POST.
    pub csrf: String,
    started: Instant,
    seen: Instant,
}

impl Session {
    fn expires(&self) -> Instant {
        (self.seen + IDLE).min(self.started + ABSOLUTE)
    }
}

/// The sessions of one console.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    max: usize,
}

fn random_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Sessions {
    /// At most `max` sessions (at least 1).
    pub fn new(max: usize) -> Self {
        Sessions {
            map: Mutex::new(HashMap::new()),
            max: max.max(1),
        }
    }

    /// A new session for `role`: its id and the session.
    pub fn login(&self, role: Role) -> (String, Session) {
        self.login_at(role, Instant::now())
    }

    fn login_at(&self, role: Role, now: Instant) -> (String, Session) {
        let mut map = self.map.lock();
        map.retain(|_, s| s.expires() > now);
        while map.len() >= self.max {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.expires())
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        let s = Session {
            role,
            csrf: random_hex(),
            started: now,
            seen: now,
        };
        let id = random_hex();
        map.insert(id.clone(), s.clone());
        (id, s)
    }

    /// The live session `id`, its idle timer restarted.
    pub fn get(&self, id: &str) -> Option<Session> {
        self.get_at(id, Instant::now())
    }

    fn get_at(&self, id: &str, now: Instant) -> Option<Session> {
        let mut map = self.map.lock();
        let s = map.get_mut(id)?;
        if s.expires() <= now {
            map.remove(id);
            return None;
        }
        s.seen = now;
        Some(s.clone())
    }

    /// Ends session `id`.
    pub fn logout(&self, id: &str) {
        self.map.lock().remove(id);
    }

    /// Sessions held now (expired ones included until the next login sweeps them).
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `presented` is the session's CSRF token, in constant time.
pub fn csrf_matches(s: &Session, presented: &str) -> bool {
    bool::from(s.csrf.as_bytes().ct_eq(presented.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sessions_expire_idle_and_absolute_and_are_bounded() {
        let s = Sessions::new(2);
        let t0 = Instant::now();
        let (a, sa) = s.login_at(Role::Admin, t0);
        assert_eq!(a.len(), 32);
        assert_ne!(a, sa.csrf);
        assert!(s.get_at(&a, t0 + IDLE / 2).is_some());
        // Seen at IDLE/2: alive until IDLE/2 + IDLE.
        assert!(s.get_at(&a, t0 + IDLE + IDLE / 4).is_some());
        assert!(s.get_at(&a, t0 + 3 * IDLE).is_none());
        assert!(s.get_at(&a, t0).is_none(), "an expired session is gone");

        // Kept busy, it still ends at ABSOLUTE.
        let (b, _) = s.login_at(Role::Viewer, t0);
        let mut t = t0;
        while t < t0 + ABSOLUTE - IDLE / 2 {
            t += IDLE / 2;
            assert!(s.get_at(&b, t).is_some());
        }
        assert!(s.get_at(&b, t0 + ABSOLUTE).is_none());

        // Bounded: the third login drops the one closest to expiry.
        let (c, _) = s.login_at(Role::Viewer, t0);
        let (d, _) = s.login_at(Role::Viewer, t0 + Duration::from_secs(1));
        let (e, _) = s.login_at(Role::Viewer, t0 + Duration::from_secs(2));
        assert!(s.len() <= 2);
        let now = t0 + Duration::from_secs(3);
        assert!(s.get_at(&c, now).is_none());
        assert!(s.get_at(&d, now).is_some() && s.get_at(&e, now).is_some());
        s.logout(&d);
        assert!(s.get_at(&d, now).is_none());
    }

    #[test]
    fn csrf_compares_whole_tokens() {
        let s = Sessions::new(4);
        let (_, sess) = s.login(Role::Admin);
        assert!(csrf_matches(&sess, &sess.csrf.clone()));
        assert!(!csrf_matches(&sess, &sess.csrf[..31]));
        assert!(!csrf_matches(&sess, ""));
        assert!(!csrf_matches(&sess, &format!("{}0", sess.csrf)));
    }
}
