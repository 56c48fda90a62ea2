//! Errors as RFC 9457 problem details. The client learns the field and the reason; internal
//! detail is logged, never returned.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    title: &'static str,
    detail: String,
    field: Option<String>,
    errors: Option<Box<serde_json::Value>>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            field: None,
            errors: None,
        }
    }

    /// Adds a machine-readable list of errors (e.g. policy errors with file, line and column).
    pub(crate) fn with_errors(mut self, errors: serde_json::Value) -> Self {
        self.errors = Some(Box::new(errors));
        self
    }

    /// A request that could not be understood, naming the field at fault.
    pub(crate) fn bad_request(field: impl Into<String>, reason: impl Into<String>) -> Self {
        let field = field.into();
        let reason = reason.into();
        Self {
            status: StatusCode::BAD_REQUEST,
            title: "invalid request",
            detail: format!("`{field}`: {reason}"),
            field: Some(field),
            errors: None,
        }
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "send an API key as `Authorization: Bearer <key>`",
        )
    }

    pub(crate) fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not found", detail)
    }

    pub(crate) fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    pub(crate) fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "rejected", detail)
    }

    /// An internal failure: logged in full, answered without detail.
    pub(crate) fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
            "the server failed; the error is in its log",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(object) = body.as_object_mut() {
            if let Some(field) = &self.field {
                object.insert("field".to_owned(), json!(field));
            }
            if let Some(errors) = self.errors {
                object.insert("errors".to_owned(), *errors);
            }
        }
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

impl From<arbiter_store::StoreError> for ApiError {
    fn from(err: arbiter_store::StoreError) -> Self {
        use arbiter_store::StoreError;
        match err {
            StoreError::NotFound { .. } => ApiError::not_found(err.to_string()),
            StoreError::Conflict { .. } => ApiError::conflict(err.to_string()),
            StoreError::Invalid { .. } => ApiError::unprocessable(err.to_string()),
            other => ApiError::internal(other),
        }
    }
}

impl From<arbiter_engine::InventoryError> for ApiError {
    fn from(err: arbiter_engine::InventoryError) -> Self {
        ApiError::unprocessable(err.to_string())
    }
}
