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
        .with_details(name, &res.group, &res.plural)
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
        .with_details(name, &res.group, &res.plural)
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
        .with_details(name, &res.group, &res.plural)
    }

    /// 422 built from field errors, joined the way apimachinery's `NewInvalid` does
    /// (`<Kind>.<group> "<name>" is invalid: ...`, identical messages once).
    pub fn invalid(res: &ResourceDef, name: &str, causes: &[FieldError]) -> Self {
        let mut seen = std::collections::HashSet::new();
        let causes: Vec<&FieldError> = causes
            .iter()
            .filter(|c| seen.insert(c.to_string()))
            .collect();
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
            format!("{} \"{}\" is invalid: {}", res.group_kind(), name, joined),
        )
        .with_details(name, &res.group, &res.kind);
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
        Self::new(403, "Forbidden", format!("{subject} is forbidden: {why}")).with_details(
            name,
            &res.group,
            &res.plural,
        )
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    Forbidden,
    Required,
    Invalid,
    /// `FieldValueTypeInvalid`: the value does not have the schema's type.
    TypeInvalid,
    NotSupported,
    TooLong,
    TooMany,
    Duplicate,
    Internal,
}

impl FieldErrorKind {
    /// The `reason` of a Status cause.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Forbidden => "FieldValueForbidden",
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::TypeInvalid => "FieldValueTypeInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Duplicate => "FieldValueDuplicate",
            Self::Internal => "InternalError",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Self::Forbidden => "Forbidden",
            Self::Required => "Required value",
            Self::Invalid | Self::TypeInvalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Duplicate => "Duplicate value",
            Self::Internal => "Internal error",
        }
    }
    /// apimachinery's `ErrorBody` never prints the value for these kinds.
    fn hides_value(self) -> bool {
        matches!(
            self,
            Self::Required | Self::Forbidden | Self::TooLong | Self::Internal
        )
    }
}

/// One validation failure on one field, rendered like apimachinery's `field.Error`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Field path, e.g. `spec.storage.size` (`<nil>` for errors without a path).
    pub field: String,
    pub kind: FieldErrorKind,
    /// The bad value, already rendered the way Go's `ErrorBody` prints it (see [`go_value`]).
    pub bad_value: Option<String>,
    pub detail: String,
}

impl FieldError {
    pub fn new(field: &str, kind: FieldErrorKind, bad_value: Option<String>, detail: &str) -> Self {
        Self {
            field: field.into(),
            kind,
            bad_value,
            detail: detail.into(),
        }
    }
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Self::new(field, FieldErrorKind::Forbidden, None, detail)
    }
    pub fn required(field: &str, detail: &str) -> Self {
        Self::new(field, FieldErrorKind::Required, None, detail)
    }
    /// `Invalid value: <detail>` (callers that render the value into `detail` themselves).
    pub fn invalid(field: &str, detail: &str) -> Self {
        Self::new(field, FieldErrorKind::Invalid, None, detail)
    }
    /// `Invalid value: <value>: <detail>`.
    pub fn invalid_value(field: &str, value: &Value, detail: &str) -> Self {
        Self::new(
            field,
            FieldErrorKind::Invalid,
            Some(go_value(value)),
            detail,
        )
    }
    /// `Unsupported value: <value>: supported values: "a", "b"` (apimachinery's `NotSupported`).
    pub fn not_supported(field: &str, value: &Value, supported: &[String]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(
            field,
            FieldErrorKind::NotSupported,
            Some(go_value(value)),
            &detail,
        )
    }
    fn message_text(&self) -> String {
        let mut s = self.kind.label().to_string();
        if !self.kind.hides_value() {
            if let Some(v) = &self.bad_value {
                s.push_str(": ");
                s.push_str(v);
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message_text())
    }
}

/// Go's `%q` of a string (strconv.Quote), for the ASCII and printable cases that occur here.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%v` of a float64 (shortest representation, exponent form from 1e21 or below 1e-4).
pub fn go_float(f: f64) -> String {
    if f.is_finite() && f != 0.0 && (f.abs() >= 1e21 || f.abs() < 1e-4) {
        // Rust renders `1e21`, Go `1e+21`; Go pads the exponent to two digits.
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    } else {
        format!("{f}")
    }
}

/// A JSON value printed the way apimachinery's `ErrorBody` prints a bad value:
/// numbers and booleans with `%v`, strings with `%q`. Go prints maps and slices
/// with `%#v` (Go syntax); JSON is used for those here.
pub fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) => go_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => go_quote(s),
        other => other.to_string(),
    }
}
