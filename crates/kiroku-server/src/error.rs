//! Every error the API answers with: JSON `{code, message, field}`, with a
//! status that says whose mistake it was.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiroku_app::{AppError, ErrorKind};
use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    pub field: Option<String>,
    #[serde(flatten)]
    pub detail: Map<String, Value>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    pub retry_after: Option<i64>,
    /// Already in the audit log (logins audit their own failures).
    pub audited: bool,
}

/// Left on an error response so the audit middleware can record the refusal.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: String,
    pub field: Option<String>,
    pub audited: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                code: code.into(),
                message: message.into(),
                field: None,
                detail: Map::new(),
            },
            retry_after: None,
            audited: false,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(field.into());
        self
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let status = match e.kind() {
            ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ErrorKind::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match e.kind() {
            // Internal detail goes to the log, not to the caller.
            ErrorKind::Internal | ErrorKind::Unavailable | ErrorKind::InsufficientStorage => {
                tracing::error!(error = %e, detail = ?e, "request failed");
                e.to_string()
            }
            _ => e.to_string(),
        };
        let mut err = ApiError::new(status, e.code(), message);
        err.body.field = e.field().map(str::to_string);
        err.audited = e.audited();
        match &e {
            AppError::IllegalTransition(t) => {
                err.body
                    .detail
                    .insert("current".into(), t.current.as_str().into());
                err.body
                    .detail
                    .insert("requested".into(), t.requested.as_str().into());
            }
            AppError::VersionConflict { current, .. } => {
                err.body
                    .detail
                    .insert("current_version".into(), (*current).into());
            }
            AppError::Locked {
                retry_after_secs, ..
            } => err.retry_after = Some(*retry_after_secs),
            AppError::Refused { problems, .. } if !problems.is_empty() => {
                err.body
                    .detail
                    .insert("problems".into(), serde_json::json!(problems));
            }
            _ => {}
        }
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let refusal = Refusal {
            code: self.body.code.clone(),
            field: self.body.field.clone(),
            audited: self.audited,
        };
        let mut res = (self.status, Json(self.body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res.extensions_mut().insert(refusal);
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
