//! Typed rejections: why a record could not be used.

use std::fmt;

use serde::Serialize;

/// Why a record was rejected. Each reason is a metric label and a dead-letter field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The record exceeds the configured maximum size.
    TooLarge,
    /// The record is not valid UTF-8.
    InvalidUtf8,
    /// The record is not valid JSON.
    MalformedJson,
    /// The record is JSON but not an object.
    NotAnObject,
    /// `--format auto` could not tell which format the record is in.
    UnknownFormat,
    /// A required field is absent or empty.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A field has the right type but a value that cannot be used.
    InvalidValue,
    /// The timestamp does not parse.
    BadTimestamp,
    /// The timestamp parses but lies outside 2000-01-01..2100-01-01.
    AbsurdTimestamp,
    /// The record is a known format but an event type Vigil does not use.
    UnsupportedEvent,
    /// The event is older than the engine's out-of-order grace allows.
    LateEvent,
}

impl RejectReason {
    /// Every reason, for metrics and summaries.
    pub const ALL: [RejectReason; 12] = [
        Self::TooLarge,
        Self::InvalidUtf8,
        Self::MalformedJson,
        Self::NotAnObject,
        Self::UnknownFormat,
        Self::MissingField,
        Self::WrongType,
        Self::InvalidValue,
        Self::BadTimestamp,
        Self::AbsurdTimestamp,
        Self::UnsupportedEvent,
        Self::LateEvent,
    ];

    /// The snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::MalformedJson => "malformed_json",
            Self::NotAnObject => "not_an_object",
            Self::UnknownFormat => "unknown_format",
            Self::MissingField => "missing_field",
            Self::WrongType => "wrong_type",
            Self::InvalidValue => "invalid_value",
            Self::BadTimestamp => "bad_timestamp",
            Self::AbsurdTimestamp => "absurd_timestamp",
            Self::UnsupportedEvent => "unsupported_event",
            Self::LateEvent => "late_event",
        }
    }
}

impl RejectReason {
    /// Whether records with this reason are ignored rather than dead-lettered: well-formed
    /// records of event types Vigil does not use (most of an IdP's audit stream). They are
    /// counted, never silently dropped, but are not bad input.
    pub fn is_ignorable(self) -> bool {
        self == Self::UnsupportedEvent
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected record: the reason, the field at fault, and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The reason class.
    pub reason: RejectReason,
    /// The JSON path of the field at fault, if one is.
    pub field: Option<&'static str>,
    /// What exactly was wrong, for the operator.
    pub detail: String,
}

impl Rejection {
    /// A rejection with no particular field.
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            field: None,
            detail: detail.into(),
        }
    }

    /// A rejection caused by one field.
    pub fn field(reason: RejectReason, field: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            field: Some(field),
            detail: detail.into(),
        }
    }

    /// A required field is absent or empty.
    pub fn missing(field: &'static str) -> Self {
        Self::field(
            RejectReason::MissingField,
            field,
            format!("required field {field} is missing"),
        )
    }

    /// A field has the wrong JSON type.
    pub fn wrong_type(field: &'static str, expected: &str) -> Self {
        Self::field(
            RejectReason::WrongType,
            field,
            format!("field {field} must be {expected}"),
        )
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl std::error::Error for Rejection {}
