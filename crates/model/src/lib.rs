//! Vigil's data model: the normalized [`SessionEvent`], the input adapters that produce it,
//! typed [`Rejection`]s for records that can't be used, and the outputs: [`Alert`] (rendered as
//! an OCSF Detection Finding) and [`Revocation`] (rendered as a CAEP `session-revoked` Security
//! Event Token; `vigil-sign` signs it).
//!
//! This crate does no I/O: it maps bytes to values and values to JSON. Raw secrets never enter
//! a [`SessionEvent`]; token identifiers are reduced to keyed hashes ([`TokenHash`]) as they
//! are parsed.
//!
//! ```
//! use vigil_model::adapters::{parse_record, AdapterContext, InputFormat};
//!
//! let ctx = AdapterContext::new(b"deployment-secret");
//! let line = br#"{"id":"e1","time":"2024-05-01T12:00:00Z","kind":"access",
//!                 "session_id":"s1","user_id":"alice","ip":"203.0.113.7"}"#;
//! let ev = parse_record(line, InputFormat::Auto, &ctx).expect("a valid native record");
//! assert_eq!(ev.session_id, "s1");
//! ```

pub mod adapters;
pub mod event;
pub mod output;
pub mod redact;
pub mod reject;
pub mod text;
pub mod time;
pub mod token;

pub use event::{EventKind, Geo, IdentityType, LifecycleChange, SessionEvent, SourceFormat};
pub use output::{
    Action, Alert, Anomaly, Endpoint, Finding, Revocation, Severity, Subject, WindowStats,
};
pub use reject::{RejectReason, Rejection};
pub use token::{TokenHash, TokenHasher};
