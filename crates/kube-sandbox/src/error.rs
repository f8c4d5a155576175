//! API errors rendered as `meta/v1 Status` bodies, the shape `kube::Error::Api` parses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::resources::ResourceDef;

/// A failed API call: HTTP code, machine-readable reason and human message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, name: &str, group: &str, kind: &str) -> Self {
        let mut d = serde_json::Map::new();
        if !name.is_empty() {
            d.insert("name".into(), json!(name));
        }
        if !group.is_empty() {
            d.insert("group".into(), json!(group));
        }
        if !kind.is_empty() {
            d.insert("kind".into(), json!(kind));
        }
        self.details = Some(Value::Object(d));
        self
    }

    pub fn not_found(res: &ResourceDef, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", res.qualified(), name),
        )
        .with_details(name, res.group, res.plural)
    }

    /// 404 for a path the server does not serve at all.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details("", "", "")
    }

    pub fn already_exists(res: &ResourceDef, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", res.qualified(), name),
        )
        .with_details(name, res.group, res.plural)
    }

    pub fn conflict(res: &ResourceDef, name: &str) -> Self {
        Self::conflict_msg(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn conflict_msg(res: &ResourceDef, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {}",
                res.qualified(),
                name,
                why
            ),
        )
        .with_details(name, res.group, res.plural)
    }

    /// 422 built from field errors, joined the way apimachinery's `NewInvalid` does.
    pub fn invalid(res: &ResourceDef, name: &str, causes: &[FieldError]) -> Self {
        let joined = if causes.len() == 1 {
            causes[0].to_string()
        } else {
            format!(
                "[{}]",
                causes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{} \"{}\" is invalid: {}", res.kind, name, joined),
        )
        .with_details(name, res.group, res.kind);
        if let Some(Value::Object(d)) = e.details.as_mut() {
            let list: Vec<Value> = causes
                .iter()
                .map(|c| json!({"reason": c.kind.reason(), "message": c.message_text(), "field": c.field}))
                .collect();
            d.insert("causes".into(), Value::Array(list));
        }
        e
    }

    /// 403 from admission or authorization: `<resource> "<name>" is forbidden: <why>`.
    pub fn forbidden(res: &ResourceDef, name: &str, why: &str) -> Self {
        let subject = if name.is_empty() {
            res.qualified()
        } else {
            format!("{} \"{}\"", res.qualified(), name)
        };
        Self::new(403, "Forbidden", format!("{subject} is forbidden: {why}"))
            .with_details(name, res.group, res.plural)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unsupported_media(accepted: &[&str]) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn gone(requested: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// An injected failure: the reason is the one the real server uses for that code.
    pub fn injected(code: u16) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            410 => "Expired",
            422 => "Invalid",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        Self::new(code, reason, format!("injected fault: HTTP {code}"))
    }

    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let (Some(d), Some(obj)) = (&self.details, s.as_object_mut()) {
            obj.insert("details".into(), d.clone());
        }
        s
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.to_status().to_string();
        (
            code,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

/// Kind of a field error, as in apimachinery's `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldErrorKind {
    Forbidden,
    Required,
    Invalid,
}

impl FieldErrorKind {
    fn reason(self) -> &'static str {
        match self {
            Self::Forbidden => "FieldValueForbidden",
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Self::Forbidden => "Forbidden",
            Self::Required => "Required value",
            Self::Invalid => "Invalid value",
        }
    }
}

/// One validation failure on one field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub kind: FieldErrorKind,
    pub detail: String,
}

impl FieldError {
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Forbidden,
            detail: detail.into(),
        }
    }
    pub fn required(field: &str, detail: &str) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Required,
            detail: detail.into(),
        }
    }
    pub fn invalid(field: &str, detail: &str) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Invalid,
            detail: detail.into(),
        }
    }
    fn message_text(&self) -> String {
        format!("{}: {}", self.kind.label(), self.detail)
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message_text())
    }
}
