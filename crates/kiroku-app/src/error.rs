//! What can go wrong, classified for whoever answers the caller.

use kiroku_domain::{IllegalTransition, ValidationError};
use kiroku_store::StoreError;

/// How an error should be answered; the HTTP layer maps these to statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Invalid,
    Unauthenticated,
    Forbidden,
    NotFound,
    Conflict,
    /// The caller's copy is stale (a version named in If-Match).
    PreconditionFailed,
    TooManyAttempts,
    Unavailable,
    /// The database's disk is full.
    InsufficientStorage,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No valid credentials; `code` says which check failed.
    #[error("{message}")]
    Unauthenticated {
        code: &'static str,
        message: &'static str,
        /// The attempt has already been written to the audit log.
        audited: bool,
    },
    #[error("your role ({role}) does not allow {permission}")]
    Forbidden {
        role: &'static str,
        permission: &'static str,
    },
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),
    #[error("the {what} is at version {current}, not the version given; reload it and try again")]
    VersionConflict { what: &'static str, current: i64 },
    #[error("{what} already exists")]
    Duplicate {
        what: &'static str,
        field: &'static str,
    },
    #[error("too many failed attempts; try again after {retry_after_secs} seconds")]
    Locked {
        retry_after_secs: i64,
        audited: bool,
    },
    #[error("the database is unavailable")]
    Unavailable(String),
    #[error("the database's disk is full; nothing was written, try again once space is freed")]
    DiskFull(String),
    /// The request is well-formed but the state refuses it (a report not
    /// ready to be final); `problems` say what to mend.
    #[error("{message}")]
    Refused {
        code: &'static str,
        message: String,
        field: Option<String>,
        problems: Vec<kiroku_domain::postmortem::Problem>,
    },
    /// This installation lacks what the request needs (fonts for PDF).
    #[error("{message}")]
    NotConfigured { code: &'static str, message: String },
    /// Stored data is not what Kiroku wrote (an audit node missing, a
    /// document that does not decode): the database was changed behind
    /// its back. The detail is logged, not answered.
    #[error("stored data is damaged; `kiroku audit verify` names what is wrong")]
    Damaged(String),
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => AppError::Unavailable(m),
            StoreError::DiskFull(m) => AppError::DiskFull(m),
            StoreError::VersionMismatch { current } => AppError::VersionConflict {
                what: "incident",
                current,
            },
            // Callers that can name the field map duplicates themselves;
            // one reaching here is a clash the caller could not cause.
            StoreError::Duplicate(what) => {
                AppError::Internal(format!("unexpected duplicate {what}"))
            }
            StoreError::Corrupt(m) => AppError::Damaged(m),
            other => AppError::Internal(other.to_string()),
        }
    }
}

/// Maps a failed replace of a named, versioned record (a service, a
/// policy, a schedule): a stale version, or a name another record holds.
pub(crate) fn stale_or_taken(what: &'static str) -> impl Fn(StoreError) -> AppError {
    move |e| match e {
        StoreError::VersionMismatch { current } => AppError::VersionConflict { what, current },
        other => duplicate_of(what, "name")(other),
    }
}

/// Maps a store's duplicate to the caller's field, other errors as usual.
pub(crate) fn duplicate_of(
    what: &'static str,
    field: &'static str,
) -> impl Fn(StoreError) -> AppError {
    move |e| match e {
        StoreError::Duplicate(_) => AppError::Duplicate { what, field },
        other => other.into(),
    }
}

impl AppError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            AppError::Invalid(_) => ErrorKind::Invalid,
            AppError::Unauthenticated { .. } => ErrorKind::Unauthenticated,
            AppError::Forbidden { .. } => ErrorKind::Forbidden,
            AppError::NotFound { .. } => ErrorKind::NotFound,
            AppError::IllegalTransition(_)
            | AppError::Duplicate { .. }
            | AppError::Refused { .. } => ErrorKind::Conflict,
            AppError::NotConfigured { .. } => ErrorKind::Unavailable,
            AppError::VersionConflict { .. } => ErrorKind::PreconditionFailed,
            AppError::Locked { .. } => ErrorKind::TooManyAttempts,
            AppError::Unavailable(_) => ErrorKind::Unavailable,
            AppError::DiskFull(_) => ErrorKind::InsufficientStorage,
            AppError::Damaged(_) | AppError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Invalid(v) => v.code,
            AppError::Unauthenticated { code, .. } => code,
            AppError::Forbidden { .. } => "forbidden",
            AppError::NotFound { .. } => "not_found",
            AppError::IllegalTransition(_) => "illegal_transition",
            AppError::VersionConflict { .. } => "version_conflict",
            AppError::Duplicate { .. } => "already_exists",
            AppError::Locked { .. } => "too_many_attempts",
            AppError::Unavailable(_) => "unavailable",
            AppError::DiskFull(_) => "disk_full",
            AppError::Damaged(_) => "data_damaged",
            AppError::Internal(_) => "internal",
            AppError::Refused { code, .. } | AppError::NotConfigured { code, .. } => code,
        }
    }

    /// The input field at fault, where there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            AppError::Invalid(v) => Some(&v.field),
            AppError::Duplicate { field, .. } => Some(field),
            AppError::IllegalTransition(_) => Some("status"),
            AppError::VersionConflict { .. } => Some("version"),
            AppError::Refused { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// Whether the attempt is already in the audit log.
    pub fn audited(&self) -> bool {
        matches!(
            self,
            AppError::Unauthenticated { audited: true, .. }
                | AppError::Locked { audited: true, .. }
        )
    }

    pub(crate) fn unauthenticated(code: &'static str, message: &'static str) -> Self {
        AppError::Unauthenticated {
            code,
            message,
            audited: false,
        }
    }

    pub fn invalid(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        AppError::Invalid(ValidationError::new(field, code, message))
    }
}
