//! What can go wrong in a store, in terms a caller can act on.

/// An error from a [`Store`](crate::Store) method.
///
/// The server maps `NotFound` to 404, `Conflict` to 409, `Invalid` to 400 and the rest to 500 or
/// 503. A failed call has changed nothing and recorded no change event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The object asked for does not exist.
    #[error("unknown {what} `{id}`")]
    NotFound {
        /// What kind of object: `identity`, `group`, `resource`, `policy version`, `api key`.
        what: &'static str,
        /// Its id as a person would write it, e.g. `Agent::"build-bot"` or `3`.
        id: String,
    },
    /// The change contradicts what is stored, e.g. creating an identity that already exists.
    #[error("{what} `{id}` {reason}")]
    Conflict {
        /// What kind of object.
        what: &'static str,
        /// Its id as a person would write it.
        id: String,
        /// What stands in the way, completing the sentence: `already exists`, `is already revoked`.
        reason: &'static str,
    },
    /// An argument is malformed; nothing was looked up or changed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The argument or field at fault, e.g. `id`, `limit`, `after`.
        field: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// The database was written by a newer version of Arbiter; this build refuses to touch it.
    #[error(
        "database schema version {found} is newer than the {supported} this build knows: upgrade arbiter"
    )]
    SchemaTooNew {
        /// The schema version recorded in the database.
        found: u32,
        /// The newest schema version this build can migrate to.
        supported: u32,
    },
    /// The storage backend failed (I/O, lock, corrupt row). Details are for logs, not for clients.
    #[error("storage failed: {0}")]
    Backend(String),
}

impl StoreError {
    /// Shorthand for [`StoreError::Invalid`].
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        StoreError::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`StoreError::NotFound`].
    pub(crate) fn not_found(what: &'static str, id: impl ToString) -> Self {
        StoreError::NotFound {
            what,
            id: id.to_string(),
        }
    }

    /// Shorthand for [`StoreError::Conflict`].
    pub(crate) fn conflict(what: &'static str, id: impl ToString, reason: &'static str) -> Self {
        StoreError::Conflict {
            what,
            id: id.to_string(),
            reason,
        }
    }
}
