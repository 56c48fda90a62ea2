//! The open sessions, who each acts as and which credential opened it, and how to close one.
//!
//! A Streamable HTTP session is bound to the credential that opened it: a request into it with
//! any other credential is answered as if it did not exist. Closing an HTTP session ends it in
//! rmcp's session manager (its streams end, and a request naming it is answered 404); closing a
//! stdio session ends `serve_session`, which closes stdin's and stdout's session.

use crate::config::AgentIdentity;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::SessionManager;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What decisions are made against: the active policy version and the inventory's version.
pub(crate) type Version = (u64, u64);

/// How a session is ended.
pub(crate) enum Closer {
    /// A Streamable HTTP session, by its id in the session manager.
    Http {
        manager: Arc<LocalSessionManager>,
        id: String,
    },
    /// A stdio session, told why it ends.
    Stdio(tokio::sync::watch::Sender<Option<String>>),
}

/// One open session.
pub(crate) struct OpenSession {
    pub(crate) identity: AgentIdentity,
    /// The SHA-256 of the credential that opened it (HTTP); stdio sessions have none.
    pub(crate) credential: Option<String>,
    pub(crate) closer: Closer,
    /// The state its agent was last found not contained in, and when.
    pub(crate) checked: (Version, Instant),
}

impl OpenSession {
    /// Ends the session, saying why in the gateway's log.
    pub(crate) async fn close(self, reason: &str) {
        tracing::warn!(
            subject = %self.identity.subject,
            reason,
            "session closed"
        );
        match self.closer {
            Closer::Http { manager, id } => {
                // Already gone (closed by the client, or expired) is as good as closed.
                let _ = manager.close_session(&id.into()).await;
            }
            Closer::Stdio(sender) => {
                let _ = sender.send(Some(reason.to_owned()));
            }
        }
    }
}

/// Every open session, by key (the HTTP session id, or `stdio-<n>`).
#[derive(Default)]
pub(crate) struct Sessions {
    open: Mutex<HashMap<String, OpenSession>>,
    next_stdio: AtomicU64,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sessions({})", self.lock().len())
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, OpenSession>> {
        // A poisoned lock only means a panic elsewhere; the map itself is intact.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn insert(&self, key: String, session: OpenSession) {
        self.lock().insert(key, session);
    }

    pub(crate) fn stdio_key(&self) -> String {
        format!("stdio-{}", self.next_stdio.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn remove(&self, key: &str) -> Option<OpenSession> {
        self.lock().remove(key)
    }

    /// Whether `key` is an open session opened with `credential`.
    pub(crate) fn opened_with(&self, key: &str, credential: &str) -> bool {
        self.lock()
            .get(key)
            .is_some_and(|session| session.credential.as_deref() == Some(credential))
    }

    /// Takes out the sessions `closing` picks (to be closed by the caller).
    pub(crate) fn take_where(
        &self,
        mut closing: impl FnMut(&OpenSession) -> bool,
    ) -> Vec<OpenSession> {
        let mut open = self.lock();
        let keys: Vec<String> = open
            .iter()
            .filter(|(_, session)| closing(session))
            .map(|(key, _)| key.clone())
            .collect();
        keys.iter().filter_map(|key| open.remove(key)).collect()
    }

    /// The HTTP sessions: their keys and session managers, to find those that ended.
    pub(crate) fn http(&self) -> Vec<(String, Arc<LocalSessionManager>)> {
        self.lock()
            .iter()
            .filter_map(|(key, session)| match &session.closer {
                Closer::Http { manager, .. } => Some((key.clone(), manager.clone())),
                Closer::Stdio(_) => None,
            })
            .collect()
    }

    /// The agents of open sessions that were not checked in `version` or not since `since`.
    pub(crate) fn due(&self, version: Version, since: Instant) -> Vec<AgentIdentity> {
        let mut due: Vec<AgentIdentity> = Vec::new();
        for session in self.lock().values() {
            let (checked_version, checked_at) = session.checked;
            if (checked_version != version || checked_at < since)
                && !due.contains(&session.identity)
            {
                due.push(session.identity.clone());
            }
        }
        due
    }

    /// Records that `identity` was found not contained in `version`, `at`.
    pub(crate) fn checked(&self, identity: &AgentIdentity, version: Version, at: Instant) {
        for session in self.lock().values_mut() {
            if &session.identity == identity {
                session.checked = (version, at);
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// How many sessions are open for `subject`'s agent.
    pub(crate) fn count(&self, subject: &arbiter_core::EntityRef) -> usize {
        self.lock()
            .values()
            .filter(|session| &session.identity.subject == subject)
            .count()
    }
}
