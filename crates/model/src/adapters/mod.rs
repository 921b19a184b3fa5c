//! Input adapters: raw bytes in any supported format to a [`SessionEvent`] or a [`Rejection`].

pub mod entra;
pub mod json;
pub mod native;
pub mod ocsf;
pub mod okta;
pub mod scan;

use std::fmt;
use std::str::FromStr;

use json::Value;

use crate::event::SessionEvent;
use crate::reject::{RejectReason, Rejection};
use crate::token::{TokenHash, TokenHasher};

/// Default largest record accepted: 1 MiB. IdP records are a few KiB; anything larger is a
/// mistake or an attack on the parser.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

/// Which adapter to use for a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InputFormat {
    /// Detect per record from its fields.
    #[default]
    Auto,
    /// Vigil's native schema.
    Native,
    /// Okta System Log.
    Okta,
    /// Entra ID sign-in logs.
    Entra,
    /// OCSF Authentication / API Activity.
    Ocsf,
}

impl InputFormat {
    /// Every format name accepted by [`FromStr`].
    pub const NAMES: [&'static str; 5] = ["auto", "native", "okta", "entra", "ocsf"];
}

impl FromStr for InputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => Self::Auto,
            "native" => Self::Native,
            "okta" => Self::Okta,
            "entra" => Self::Entra,
            "ocsf" => Self::Ocsf,
            other => {
                return Err(format!(
                    "unknown input format {other:?} (expected one of {})",
                    Self::NAMES.join(", ")
                ));
            }
        })
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Native => "native",
            Self::Okta => "okta",
            Self::Entra => "entra",
            Self::Ocsf => "ocsf",
        })
    }
}

/// What every adapter needs: the key for token hashes and the size limit.
#[derive(Debug, Clone)]
pub struct AdapterContext {
    /// Keyed hasher for token identifiers.
    pub hasher: TokenHasher,
    /// Records larger than this are rejected unread.
    pub max_record_bytes: usize,
}

impl AdapterContext {
    /// A context with the given hash key and the default size limit.
    pub fn new(key: &[u8]) -> Self {
        Self {
            hasher: TokenHasher::new(key),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// Parses one record (one NDJSON line or one Kafka message value).
pub fn parse_record(
    bytes: &[u8],
    format: InputFormat,
    ctx: &AdapterContext,
) -> Result<SessionEvent, Rejection> {
    let mut ev = SessionEvent::empty(crate::event::SourceFormat::Native);
    parse_record_into(bytes, format, ctx, &mut ev).map(|()| ev)
}

/// [`parse_record`] into `ev`, reusing the allocations of the strings it holds where the
/// record takes the native fast path (a partition task parses into the same few events over
/// and over). The event written is the one [`parse_record`] returns, whatever `ev` held
/// before; after an `Err`, `ev` holds no particular event.
pub fn parse_record_into(
    bytes: &[u8],
    format: InputFormat,
    ctx: &AdapterContext,
    ev: &mut SessionEvent,
) -> Result<(), Rejection> {
    if bytes.len() > ctx.max_record_bytes {
        return Err(Rejection::new(
            RejectReason::TooLarge,
            format!(
                "record is {} bytes, larger than the {} byte limit",
                bytes.len(),
                ctx.max_record_bytes
            ),
        ));
    }
    // Checked with SIMD where the CPU has it (the check was a tenth of an Okta record's
    // parse); std's check, slower, finds where a record that fails it goes wrong.
    let text = simdutf8::basic::from_utf8(bytes)
        .or_else(|_| std::str::from_utf8(bytes))
        .map_err(|e| {
            Rejection::new(
                RejectReason::InvalidUtf8,
                format!(
                    "record is not valid UTF-8 (first bad byte at offset {})",
                    e.valid_up_to()
                ),
            )
        })?;
    // Well-formed native records take one typed pass; everything else, and every record
    // the typed pass is unsure of, the general path below.
    let native_candidate = match format {
        InputFormat::Native => true,
        InputFormat::Auto => text.contains("\"kind\""),
        _ => false,
    };
    if native_candidate && native::parse_fast_into(text, ctx, ev) {
        return Ok(());
    }
    let value = Value::parse_record(text).map_err(|e| {
        Rejection::new(
            RejectReason::MalformedJson,
            format!("record is not valid JSON: {e}"),
        )
    })?;
    *ev = map_value(&value, format, ctx)?;
    Ok(())
}

/// Maps an already-parsed JSON value.
pub fn parse_value(
    value: &serde_json::Value,
    format: InputFormat,
    ctx: &AdapterContext,
) -> Result<SessionEvent, Rejection> {
    use serde::Deserialize;
    // Borrows the strings of `value`; cannot fail (every JSON value is a `Value`).
    let value = Value::deserialize(value).map_err(|e| {
        Rejection::new(
            RejectReason::MalformedJson,
            format!("record is not valid JSON: {e}"),
        )
    })?;
    map_value(&value, format, ctx)
}

fn map_value(
    value: &Value,
    format: InputFormat,
    ctx: &AdapterContext,
) -> Result<SessionEvent, Rejection> {
    if !value.is_object() {
        return Err(Rejection::new(
            RejectReason::NotAnObject,
            format!("record is a JSON {}, not an object", value.type_name()),
        ));
    }
    let format = match format {
        InputFormat::Auto => detect(value).ok_or_else(|| {
            Rejection::new(
                RejectReason::UnknownFormat,
                "record matches none of the native, okta, entra or ocsf shapes",
            )
        })?,
        f => f,
    };
    match format {
        InputFormat::Native | InputFormat::Auto => native::parse(value, ctx),
        InputFormat::Okta => okta::parse(value, ctx),
        InputFormat::Entra => entra::parse(value, ctx),
        InputFormat::Ocsf => ocsf::parse(value, ctx),
    }
}

/// Which format a JSON object is in, judged by the fields only that format has.
pub fn detect(v: &Value) -> Option<InputFormat> {
    if native::detect(v) {
        Some(InputFormat::Native)
    } else if okta::detect(v) {
        Some(InputFormat::Okta)
    } else if ocsf::detect(v) {
        Some(InputFormat::Ocsf)
    } else if entra::detect(v) {
        Some(InputFormat::Entra)
    } else {
        None
    }
}

/// A token given either as an identifier (hashed here) or as a precomputed keyed hash.
fn token_field(
    v: &Value,
    ctx: &AdapterContext,
    id_field: &'static str,
    hash_field: &'static str,
) -> Result<Option<TokenHash>, Rejection> {
    if let Some(id) = json::opt_id(v, &[id_field], id_field)? {
        return Ok(Some(ctx.hasher.hash(&id)));
    }
    match json::opt_str(v, &[hash_field], hash_field)? {
        None => Ok(None),
        Some(h) => TokenHash::from_hex(h).map(Some).ok_or_else(|| {
            Rejection::field(
                RejectReason::InvalidValue,
                hash_field,
                format!(
                    "field {hash_field} must be a hex HMAC-SHA256 digest (32 to 64 hex digits)"
                ),
            )
        }),
    }
}

/// The fuzz targets' entry point (also used by the corpus replay test): parses `data` as
/// `target` (`native`, `okta`, `entra`, `ocsf`, anything else: auto) and checks the
/// adapter's promises. Panics only if a promise is broken.
pub fn fuzz_entry(target: &str, data: &[u8]) {
    let format = target.parse().unwrap_or(InputFormat::Auto);
    let ctx = AdapterContext {
        hasher: TokenHasher::new(b"fuzz"),
        max_record_bytes: 1 << 16,
    };
    match parse_record(data, format, &ctx) {
        Ok(ev) => {
            use crate::event::EventKind;
            assert!(!ev.source_id.is_empty(), "an event without a source id");
            // What the schema requires of each kind: a session event names its session and
            // user, an account change its user, an exposure the token's hash.
            if ev.kind.is_session_event() {
                assert!(
                    !ev.session_id.is_empty(),
                    "a session event without a session"
                );
            }
            if ev.kind == EventKind::TokenExposed {
                assert!(ev.token.is_some(), "an exposure without a token");
            } else {
                assert!(!ev.user_id.is_empty(), "an event without a user");
            }
            assert!(crate::time::is_plausible(ev.time_ms));
        }
        Err(r) => assert!(!r.detail.is_empty()),
    }
    // The native fast path reads the text itself: where it answers, the general path must
    // read the same event from the same text.
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(fast) = native::parse_fast(text, &ctx)
    {
        let general = Value::parse_record(text)
            .map_err(|e| e.to_string())
            .and_then(|v| native::parse(&v, &ctx).map_err(|r| r.detail));
        assert_eq!(Ok(&fast), general.as_ref(), "fast and general paths differ");
    }
}

/// An account lifecycle event for `user` (no session): what every adapter produces for a
/// deactivation, deletion, reset or credential change.
pub(crate) fn lifecycle_event(
    time_ms: i64,
    user: &str,
    tenant: Option<&str>,
    source: crate::event::SourceFormat,
    source_id: String,
    change: crate::event::LifecycleChange,
) -> crate::event::SessionEvent {
    crate::event::SessionEvent {
        time_ms,
        kind: crate::event::EventKind::UserLifecycle,
        user_id: user.to_owned(),
        tenant: tenant.map(str::to_owned),
        source_id,
        lifecycle: Some(change),
        ..crate::event::SessionEvent::empty(source)
    }
}
