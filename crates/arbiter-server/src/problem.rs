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
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            field: None,
        }
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
        if let (Some(field), Some(object)) = (&self.field, body.as_object_mut()) {
            object.insert("field".to_owned(), json!(field));
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
