//! The engine's durable state as key/value records, for a compacted changelog.
//!
//! The runtime asks for what changed since its last commit ([`Engine::drain_changes`]) and
//! writes it to the partition's changelog; on assignment it feeds the changelog back
//! ([`Engine::restore`]). A `None` value is a tombstone: the key was evicted.
//!
//! Encoding: keys are `s:<session id>`, `t:<token hash hex>`, `r:<refresh hash hex>`,
//! `u:<user id>` (the user's baseline) and `w:` (the watermark). Values are written in one of
//! two encodings ([`ValueEncoding`]), and read in either:
//!
//! - binary (the default): the byte [`BINARY_MAGIC`], the layout version
//!   [`BINARY_VERSION`], the kind of value (1 session, 2 token, 3 refresh, 4 user,
//!   5 watermark), then the state struct in postcard's compact serde format. A record is
//!   about a third of its JSON size and decodes several times faster, which is what restore
//!   speed (failover time) is made of. Postcard has no field names, so any change to a state
//!   struct must bump [`BINARY_VERSION`] and keep a decoder for the previous layout; the test
//!   `binary_layout_is_pinned` fails when a struct changes without it.
//! - JSON of the state structs with a leading `v1` field naming the kind: what versions before
//!   the binary encoding wrote and read. Choose it while older instances that must read the
//!   state are still running (a rolling upgrade you may roll back), then switch.

use serde::{Deserialize, Serialize};
use vigil_model::TokenHash;

use crate::engine::{Engine, PREFETCH_GROUP};
use crate::state::{ArcStr, SessionState, Small, Warm};
use crate::tokens::{RefreshState, TokenBinding};

/// A key of the engine's durable state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StateKey {
    /// A session.
    Session(Box<str>),
    /// A token binding.
    Token(TokenHash),
    /// A refresh token's life.
    Refresh(TokenHash),
    /// A user's baseline.
    User(Box<str>),
    /// The partition's event-time watermark.
    Watermark,
}

/// First byte of a binary changelog value (a JSON value starts with `{`).
pub const BINARY_MAGIC: u8 = 0xB5;
/// Layout version of binary changelog values; bumped with every change to a state struct.
pub const BINARY_VERSION: u8 = 1;

/// How changelog values are written (both are always read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueEncoding {
    /// Compact binary (postcard), versioned: the default.
    #[default]
    Binary,
    /// JSON, as versions before the binary encoding wrote it.
    Json,
}

/// Postcard's output appended to a buffer that already holds other records.
struct Append<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, bytes: I) {
        self.0.extend(bytes);
    }
}

/// Encoded changelog records, laid end to end in one buffer that is kept between flushes.
#[derive(Debug, Default)]
pub struct EncodedChanges {
    bytes: Vec<u8>,
    /// Per record: start of the key, its end (the value's start), the value's end (`None`: a
    /// tombstone).
    records: Vec<(usize, usize, Option<usize>)>,
}

impl EncodedChanges {
    /// The records, in drain order: (key, value; `None` for a tombstone).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.records.iter().map(|&(start, key_end, value_end)| {
            (
                &self.bytes[start..key_end],
                value_end.map(|end| &self.bytes[key_end..end]),
            )
        })
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Forgets the records, keeping the buffers' capacity up to a bound (an unusually large
    /// flush does not keep its memory).
    pub fn clear(&mut self) {
        const KEEP_BYTES: usize = 8 << 20;
        self.bytes.clear();
        self.records.clear();
        self.bytes.shrink_to(KEEP_BYTES);
        self.records.shrink_to(KEEP_BYTES / 256);
    }
}

/// The value stored under a [`StateKey`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "v1", rename_all = "snake_case")]
pub enum StateValue {
    /// A session's state.
    Session(Box<SessionState>),
    /// A token binding.
    Token(TokenBinding),
    /// A refresh token's life.
    Refresh(RefreshState),
    /// A user's baseline.
    User(crate::users::UserBaseline),
    /// The watermark, epoch ms.
    Watermark {
        /// Newest event time seen.
        ms: i64,
    },
}

/// A value in the engine's tables, borrowed: encoded as its [`StateValue`] would be (same
/// tags, same layout) without copying the state first.
#[derive(Serialize)]
#[serde(tag = "v1", rename_all = "snake_case")]
enum StateRef<'a> {
    Session(&'a SessionState),
    Token(&'a TokenBinding),
    Refresh(&'a RefreshState),
    User(&'a crate::users::UserBaseline),
    Watermark { ms: i64 },
}

impl StateRef<'_> {
    fn encode_as(&self, encoding: ValueEncoding) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(encoding, &mut out);
        out
    }

    /// Appends the encoded value to `out`.
    fn encode_into(&self, encoding: ValueEncoding, out: &mut Vec<u8>) {
        let start = out.len();
        if encoding == ValueEncoding::Binary {
            out.extend_from_slice(&[BINARY_MAGIC, BINARY_VERSION, self.kind_byte()]);
            let body = match self {
                Self::Session(s) => postcard::to_extend(*s, Append(out)),
                Self::Token(t) => postcard::to_extend(*t, Append(out)),
                Self::Refresh(r) => postcard::to_extend(*r, Append(out)),
                Self::User(u) => postcard::to_extend(*u, Append(out)),
                Self::Watermark { ms } => postcard::to_extend(ms, Append(out)),
            };
            if body.is_ok() {
                return;
            }
            // Postcard refuses only what these structs do not hold (sequences of unknown
            // length); JSON says the same thing if it ever did.
            out.truncate(start);
        }
        if serde_json::to_writer(&mut *out, self).is_err() {
            out.truncate(start);
        }
    }

    fn kind_byte(&self) -> u8 {
        match self {
            Self::Session(_) => 1,
            Self::Token(_) => 2,
            Self::Refresh(_) => 3,
            Self::User(_) => 4,
            Self::Watermark { .. } => 5,
        }
    }

    fn to_owned(&self) -> StateValue {
        match self {
            Self::Session(s) => StateValue::Session(Box::new((*s).clone())),
            Self::Token(t) => StateValue::Token((*t).clone()),
            Self::Refresh(r) => StateValue::Refresh((*r).clone()),
            Self::User(u) => StateValue::User((*u).clone()),
            Self::Watermark { ms } => StateValue::Watermark { ms: *ms },
        }
    }
}

/// Why a changelog record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The key has no known prefix.
    #[error("changelog key {key:?} has no known prefix (s:, t:, r:, u:, w:)")]
    Key {
        /// The key, lossily decoded.
        key: String,
    },
    /// The value is not a state record of the kind its key names.
    #[error("changelog value for {key:?} does not decode: {reason}")]
    Value {
        /// The key.
        key: String,
        /// The decoder's complaint.
        reason: String,
    },
}

impl StateKey {
    /// Encodes the key.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoded key to `out`.
    fn encode_into(&self, out: &mut Vec<u8>) {
        let hex;
        let (prefix, rest): (&[u8], &[u8]) = match self {
            Self::Session(id) => (b"s:", id.as_bytes()),
            Self::Token(h) => {
                hex = h.to_hex();
                (b"t:", hex.as_bytes())
            }
            Self::Refresh(h) => {
                hex = h.to_hex();
                (b"r:", hex.as_bytes())
            }
            Self::User(id) => (b"u:", id.as_bytes()),
            Self::Watermark => (b"w:", b""),
        };
        out.extend_from_slice(prefix);
        out.extend_from_slice(rest);
    }

    /// Decodes a key.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let bad = || DecodeError::Key {
            key: String::from_utf8_lossy(bytes).into_owned(),
        };
        let (prefix, rest) = (bytes.get(..2).ok_or_else(bad)?, &bytes[2..]);
        let text = std::str::from_utf8(rest).map_err(|_| bad())?;
        match prefix {
            b"s:" if !text.is_empty() => Ok(Self::Session(text.into())),
            b"t:" => TokenHash::from_hex(text).map(Self::Token).ok_or_else(bad),
            b"r:" => TokenHash::from_hex(text).map(Self::Refresh).ok_or_else(bad),
            b"u:" if !text.is_empty() => Ok(Self::User(text.into())),
            b"w:" => Ok(Self::Watermark),
            _ => Err(bad()),
        }
    }
}

impl StateValue {
    /// Encodes the value in the default encoding (binary).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_as(ValueEncoding::Binary)
    }

    /// Encodes the value in `encoding`.
    pub fn encode_as(&self, encoding: ValueEncoding) -> Vec<u8> {
        self.as_ref().encode_as(encoding)
    }

    /// The value as a view, as the engine encodes it from its tables.
    fn as_ref(&self) -> StateRef<'_> {
        match self {
            Self::Session(s) => StateRef::Session(s),
            Self::Token(t) => StateRef::Token(t),
            Self::Refresh(r) => StateRef::Refresh(r),
            Self::User(u) => StateRef::User(u),
            Self::Watermark { ms } => StateRef::Watermark { ms: *ms },
        }
    }

    /// Decodes a value read under `key` (either encoding), checking that the kinds agree.
    pub fn decode(key: &StateKey, bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_with(key, bytes, &mut |s| ArcStr::from(s))
    }

    /// As [`StateValue::decode`], a session's shared strings taken from `shared`.
    fn decode_with(
        key: &StateKey,
        bytes: &[u8],
        shared: &mut impl FnMut(&str) -> ArcStr,
    ) -> Result<Self, DecodeError> {
        let err = |reason: String| DecodeError::Value {
            key: String::from_utf8_lossy(&key.encode()).into_owned(),
            reason,
        };
        let want = match key {
            StateKey::Session(_) => 1,
            StateKey::Token(_) => 2,
            StateKey::Refresh(_) => 3,
            StateKey::User(_) => 4,
            StateKey::Watermark => 5,
        };
        if let [BINARY_MAGIC, version, kind, body @ ..] = bytes {
            if *version != BINARY_VERSION {
                return Err(err(format!(
                    "binary layout version {version} is not one this build reads ({BINARY_VERSION})"
                )));
            }
            if *kind != want {
                return Err(err("value kind does not match the key".into()));
            }
            fn read<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
                match postcard::take_from_bytes(body) {
                    Ok((v, [])) => Ok(v),
                    Ok((_, rest)) => Err(format!("{} bytes left over", rest.len())),
                    Err(e) => Err(e.to_string()),
                }
            }
            return match key {
                StateKey::Session(_) => {
                    SessionState::decode(body, true, shared).map(|s| Self::Session(Box::new(s)))
                }
                StateKey::Token(_) => read(body).map(Self::Token),
                StateKey::Refresh(_) => read(body).map(Self::Refresh),
                StateKey::User(_) => read(body).map(Self::User),
                StateKey::Watermark => read(body).map(|ms| Self::Watermark { ms }),
            }
            .map_err(err);
        }
        // The tag first, then the struct the key names, read directly: serde's decoding of
        // an internally tagged enum buffers the whole record into an intermediate tree
        // first, which made restore several times slower. The struct's decoder skips the
        // tag field like any field it does not know.
        #[derive(Deserialize)]
        struct Tag<'a> {
            #[serde(borrow)]
            v1: std::borrow::Cow<'a, str>,
        }
        let tag = serde_json::from_slice::<Tag>(bytes)
            .map_err(|e| err(e.to_string()))?
            .v1;
        if tag != Self::TAGS[usize::from(want) - 1] {
            return Err(err(if Self::TAGS.contains(&&*tag) {
                "value kind does not match the key".into()
            } else {
                format!("unknown variant `{tag}`, expected one of {:?}", Self::TAGS)
            }));
        }
        fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
            serde_json::from_slice(bytes).map_err(|e| e.to_string())
        }
        #[derive(Deserialize)]
        struct Watermark {
            ms: i64,
        }
        match key {
            StateKey::Session(_) => {
                SessionState::decode(bytes, false, shared).map(|s| Self::Session(Box::new(s)))
            }
            StateKey::Token(_) => body(bytes).map(Self::Token),
            StateKey::Refresh(_) => body(bytes).map(Self::Refresh),
            StateKey::User(_) => body(bytes).map(Self::User),
            StateKey::Watermark => body::<Watermark>(bytes).map(|w| Self::Watermark { ms: w.ms }),
        }
        .map_err(err)
    }

    /// The `v1` tags of the JSON encoding, in the order of the binary kinds.
    const TAGS: [&'static str; 5] = ["session", "token", "refresh", "user", "watermark"];
}

impl Engine {
    /// Appends every state change since the last call (or since [`Engine::track_changes`]):
    /// the current value of each key touched, or `None` for keys evicted.
    pub fn drain_changes(&mut self, out: &mut Vec<(StateKey, Option<StateValue>)>) {
        self.drain_with(|key, value| out.push((key, value.map(|v| v.to_owned()))));
    }

    /// As [`Engine::drain_changes`], encoded (key, value) for the changelog topic, straight
    /// from the engine's tables: what a flush writes, without copying any state. Appends to
    /// `out`, one buffer for every record (a flush allocates nothing once `out` has grown).
    pub fn drain_encoded(&mut self, encoding: ValueEncoding, out: &mut EncodedChanges) {
        self.drain_with(|key, value| {
            let start = out.bytes.len();
            key.encode_into(&mut out.bytes);
            let key_end = out.bytes.len();
            let value_end = value.map(|v| {
                v.encode_into(encoding, &mut out.bytes);
                out.bytes.len()
            });
            out.records.push((start, key_end, value_end));
        });
    }

    /// Forgets the changes since the last drain (state just read back is durable already).
    pub fn discard_changes(&mut self) {
        self.drain_with(|_, _| {});
    }

    fn drain_with(&mut self, mut emit: impl FnMut(StateKey, Option<StateRef<'_>>)) {
        self.track_changes();
        for key in self.sessions.take_evicted() {
            emit(StateKey::Session(key), None);
        }
        for key in self.tokens.take_evicted() {
            emit(StateKey::Token(key), None);
        }
        for key in self.refresh.take_evicted() {
            emit(StateKey::Refresh(key), None);
        }
        for key in self.users.take_evicted() {
            emit(StateKey::User(key), None);
        }
        // Drained in place: the list and set keep their capacity for the next flush. Keys
        // go in runs, each run's state asked for before any of it is encoded, so that a
        // run's cache misses are in flight together.
        in_runs(self.dirty_sessions.drain(..), |run| {
            for id in run.iter() {
                self.sessions.warm_text_key(id);
            }
            for id in run.drain(..) {
                let value = self.sessions.get_mut(&*id).map(|s| {
                    s.dirty = false;
                    StateRef::Session(s)
                });
                emit(StateKey::Session(id), value);
            }
        });
        let (sessions, tokens, refresh, users) =
            (&self.sessions, &self.tokens, &self.refresh, &self.users);
        in_runs(self.dirty.drain(), |run| {
            for key in run.iter() {
                match key {
                    StateKey::Session(id) => sessions.warm_text_key(id),
                    StateKey::Token(h) => tokens.warm(h, |_, b| b.warm()),
                    StateKey::Refresh(h) => refresh.warm(h, |_, _| {}),
                    StateKey::User(id) => users.warm_text_key(id),
                    StateKey::Watermark => false,
                };
            }
            for key in run.drain(..) {
                let value = match &key {
                    StateKey::Session(id) => sessions.get(&**id).map(|s| StateRef::Session(s)),
                    StateKey::Token(h) => tokens.get(h).map(StateRef::Token),
                    StateKey::Refresh(h) => refresh.get(h).map(StateRef::Refresh),
                    StateKey::User(id) => users.get(&**id).map(|u| StateRef::User(u)),
                    StateKey::Watermark => continue,
                };
                emit(key, value);
            }
        });
        if self.watermark != i64::MIN && self.watermark != self.persisted_watermark {
            self.persisted_watermark = self.watermark;
            emit(
                StateKey::Watermark,
                Some(StateRef::Watermark { ms: self.watermark }),
            );
        }
    }

    /// Applies one changelog record as read from the topic (`value` `None` for a tombstone):
    /// what a restore does with each record. A record that does not decode changes nothing.
    pub fn restore_encoded(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), DecodeError> {
        let key = StateKey::decode(key)?;
        let strings = &mut self.strings;
        let value = value
            .map(|v| StateValue::decode_with(&key, v, &mut |s| strings.get(s)))
            .transpose()?;
        // A session's shared strings are the engine's already.
        self.put(key, value);
        Ok(())
    }

    /// Applies one changelog record (a `None` value removes the key).
    pub fn restore(&mut self, key: StateKey, mut value: Option<StateValue>) {
        if let Some(StateValue::Session(s)) = &mut value {
            s.intern(&mut self.strings);
        }
        self.put(key, value);
    }

    /// Puts a value into its table (`None` removes the key); a session's shared strings
    /// must be the engine's.
    fn put(&mut self, key: StateKey, value: Option<StateValue>) {
        match (key, value) {
            (StateKey::Session(id), Some(StateValue::Session(s))) => {
                self.sessions.put(id, s);
                // Queued for its lifetime limits and filed under its user when the engine
                // next needs them.
                self.lifetimes_stale = true;
                self.user_sessions_stale = true;
            }
            (StateKey::Token(h), Some(StateValue::Token(t))) => {
                self.tokens.put(h, t);
            }
            (StateKey::Refresh(h), Some(StateValue::Refresh(r))) => {
                self.refresh.put(h, r);
            }
            (StateKey::User(id), Some(StateValue::User(u))) => {
                self.users.put(id, Box::new(u));
            }
            (StateKey::Watermark, Some(StateValue::Watermark { ms })) => {
                self.watermark = self.watermark.max(ms);
                self.persisted_watermark = self.watermark;
            }
            (StateKey::Session(id), None) => {
                self.sessions.remove(&*id);
            }
            (StateKey::Token(h), None) => {
                self.tokens.remove(&h);
            }
            (StateKey::Refresh(h), None) => {
                self.refresh.remove(&h);
            }
            (StateKey::User(id), None) => {
                self.users.remove(&*id);
            }
            _ => {}
        }
    }
}

/// Hands `each` the items of `items` [`PREFETCH_GROUP`] at a time, in order; `each` takes
/// them out of the run it is given (a flush asks for a run's state before encoding any of it).
fn in_runs<T>(
    mut items: impl Iterator<Item = T>,
    mut each: impl FnMut(&mut Small<[T; PREFETCH_GROUP]>),
) {
    let mut run = Small::new();
    loop {
        run.extend(items.by_ref().take(PREFETCH_GROUP));
        if run.is_empty() {
            return;
        }
        each(&mut run);
        run.clear();
    }
}

#[cfg(test)]
mod tests {
    use vigil_model::adapters::{AdapterContext, InputFormat, parse_record};

    use super::*;
    use crate::{EngineConfig, Output};

    fn feed(e: &mut Engine, lines: &[&str]) -> Output {
        let ctx = AdapterContext::new(b"k");
        let mut out = Output::default();
        for l in lines {
            let ev = parse_record(l.as_bytes(), InputFormat::Native, &ctx).expect("valid");
            e.process(&ev, &mut out).expect("in order");
        }
        out
    }

    /// A restore reads each record straight into the engine (`restore_encoded`): the states
    /// equal what `StateValue::decode` reads and the original engine held, in both
    /// encodings, strings with JSON escapes included, and the sessions' shared strings are
    /// the engine's own, one copy each.
    #[test]
    fn records_restored_in_place_share_the_engines_strings() {
        let mut a = Engine::new(&EngineConfig::default()).expect("defaults");
        a.track_changes();
        let line = |id: &str, session: &str| {
            format!(
                r#"{{"id":"{id}","time":"2024-05-01T09:00:00Z","kind":"access","session_id":"{session}","user_id":"u-{session}","tenant":"acme","app":"Mail","token_id":"t-{session}","ip":"81.2.69.160","user_agent":"Mozilla/5.0 \"quoted\" (X11)","device_id":"d\u00e9v","geo":{{"lat":51.5,"lon":-0.12,"country":"GB","city":"London"}}}}"#
            )
        };
        let lines = [line("1", "s1"), line("2", "s2")];
        feed(
            &mut a,
            &lines.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let mut records = Vec::new();
        a.drain_changes(&mut records);
        for encoding in [ValueEncoding::Binary, ValueEncoding::Json] {
            let mut b = Engine::new(&EngineConfig::default()).expect("defaults");
            for (k, v) in &records {
                let (kb, vb) = (k.encode(), v.as_ref().map(|v| v.encode_as(encoding)));
                if let (StateKey::Session(_), Some(bytes)) = (k, &vb) {
                    let decoded = StateValue::decode(k, bytes).expect("decodes");
                    assert_eq!(Some(&decoded), v.as_ref(), "{encoding:?}");
                }
                b.restore_encoded(&kb, vb.as_deref()).expect("restores");
            }
            let (s1, s2) = (b.session("s1").expect("s1"), b.session("s2").expect("s2"));
            assert_eq!(Some(s1), a.session("s1"), "{encoding:?}");
            assert_eq!(Some(s2), a.session("s2"), "{encoding:?}");
            assert_eq!(
                s1.last_endpoint.user_agent.as_deref(),
                Some(r#"Mozilla/5.0 "quoted" (X11)"#)
            );
            let (e1, e2) = (&s1.last_endpoint, &s2.last_endpoint);
            for (x, y) in [
                (&e1.user_agent, &e2.user_agent),
                (&e1.city, &e2.city),
                (&e1.country, &e2.country),
                (&s1.tenant, &s2.tenant),
                (&s1.app, &s2.app),
            ] {
                let (x, y) = (x.as_ref().expect("held"), y.as_ref().expect("held"));
                assert!(ArcStr::ptr_eq(x, y), "{x} held twice ({encoding:?})");
            }
            // The user agent, city, country, tenant and application, once each.
            assert_eq!(b.strings.len(), 5, "{encoding:?}");
        }
    }

    /// State written to the changelog and restored into a fresh engine catches an attack
    /// whose first half the original engine saw.
    #[test]
    fn restored_engine_continues_detection() {
        let mut a = Engine::new(&EngineConfig::default()).expect("defaults");
        a.track_changes();
        feed(
            &mut a,
            &[
                r#"{"id":"1","time":"2024-05-01T09:00:00Z","kind":"session_start","session_id":"s","user_id":"u","token_id":"t1","geo":{"lat":51.5,"lon":-0.12}}"#,
            ],
        );
        let mut records = Vec::new();
        a.drain_changes(&mut records);
        assert_eq!(
            records.len(),
            4,
            "session, token, user baseline and watermark: {records:?}"
        );
        let mut b = Engine::new(&EngineConfig::default()).expect("defaults");
        for (k, v) in records {
            let (kb, vb) = (k.encode(), v.map(|v| v.encode()));
            let k2 = StateKey::decode(&kb).expect("key decodes");
            let v2 = vb.map(|b| StateValue::decode(&k2, &b).expect("value decodes"));
            b.restore(k2, v2);
        }
        assert_eq!(b.session("s"), a.session("s"));
        assert_eq!(
            b.users.get("u"),
            a.users.get("u"),
            "the user baseline is restored"
        );
        let out = feed(
            &mut b,
            &[
                r#"{"id":"2","time":"2024-05-01T09:20:00Z","kind":"access","session_id":"s","user_id":"u","geo":{"lat":40.7,"lon":-74.0}}"#,
            ],
        );
        assert_eq!(out.revocations.len(), 1);
    }

    /// A session, its token, refresh token and user, and the watermark: every kind of value.
    fn every_kind() -> Vec<(StateKey, Option<StateValue>)> {
        let mut e = Engine::new(&EngineConfig::default()).expect("defaults");
        e.track_changes();
        feed(
            &mut e,
            &[
                r#"{"id":"1","time":"2024-05-01T09:00:00Z","kind":"session_start","session_id":"s","user_id":"u","tenant":"t","token_id":"t1","ip":"81.2.69.1","user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0","device_id":"d1","scopes":["openid","mail.read"],"geo":{"lat":51.5,"lon":-0.12,"country":"GB","asn":2856}}"#,
                r#"{"id":"2","time":"2024-05-01T09:05:00Z","kind":"token_refreshed","session_id":"s","user_id":"u","refresh_token_id":"r1","new_refresh_token_id":"r2","ip":"81.2.69.1"}"#,
                r#"{"id":"3","time":"2024-05-01T09:30:00Z","kind":"access","session_id":"s","user_id":"u","ip":"81.2.69.1","geo":{"lat":40.7,"lon":-74.0,"country":"US","asn":701}}"#,
            ],
        );
        let mut records = Vec::new();
        e.drain_changes(&mut records);
        records
    }

    /// Encoding straight from the tables gives the bytes that copying the values out and
    /// encoding them gives, for every kind of value, in both encodings.
    #[test]
    fn drained_encoded_equals_drained_then_encoded() {
        for encoding in [ValueEncoding::Binary, ValueEncoding::Json] {
            let lines = [
                r#"{"id":"1","time":"2024-05-01T09:00:00Z","kind":"session_start","session_id":"s","user_id":"u","token_id":"t1","ip":"81.2.69.1","user_agent":"Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0","device_id":"d1","scopes":["openid"],"geo":{"lat":51.5,"lon":-0.12,"country":"GB","asn":2856}}"#,
                r#"{"id":"2","time":"2024-05-01T09:05:00Z","kind":"token_refreshed","session_id":"s","user_id":"u","refresh_token_id":"r1","new_refresh_token_id":"r2","ip":"81.2.69.1"}"#,
            ];
            let mut a = Engine::new(&EngineConfig::default()).expect("defaults");
            let mut b = Engine::new(&EngineConfig::default()).expect("defaults");
            a.track_changes();
            b.track_changes();
            feed(&mut a, &lines);
            feed(&mut b, &lines);
            let mut values = Vec::new();
            a.drain_changes(&mut values);
            let mut copied: Vec<_> = values
                .into_iter()
                .map(|(k, v)| (k.encode(), v.map(|v| v.encode_as(encoding))))
                .collect();
            let mut encoded = EncodedChanges::default();
            b.drain_encoded(encoding, &mut encoded);
            let mut direct: Vec<_> = encoded
                .iter()
                .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                .collect();
            copied.sort();
            direct.sort();
            assert_eq!(
                copied.len(),
                6,
                "session, token, two refresh, user, watermark"
            );
            assert_eq!(direct, copied, "{encoding:?}");
        }
    }

    /// A flush drains its keys in runs (each run's state asked for first): every changed key
    /// of a flush longer than a run is written once with its current value, and a session
    /// drained is marked again by its next change.
    #[test]
    fn a_flush_of_many_runs_writes_every_changed_key_once() {
        let n = 3 * crate::PREFETCH_GROUP + 5;
        let lines: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"id":"e{i}","time":"2024-05-01T09:00:{:02}Z","kind":"access","session_id":"s{i}","user_id":"u{i}","token_id":"t{i}","ip":"81.2.69.{i}"}}"#,
                    i % 60
                )
            })
            .collect();
        let mut e = Engine::new(&EngineConfig::default()).expect("defaults");
        e.track_changes();
        feed(
            &mut e,
            &lines.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let mut changes = Vec::new();
        e.drain_changes(&mut changes);
        let keys: std::collections::HashSet<_> = changes.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys.len(), changes.len(), "a key written twice");
        for i in 0..n {
            let sid = format!("s{i}");
            let written = changes
                .iter()
                .find(|(k, _)| *k == StateKey::Session(sid.as_str().into()));
            match written {
                Some((_, Some(StateValue::Session(s)))) => {
                    assert_eq!(**s, *e.session(&sid).expect("live"), "{sid}");
                }
                other => panic!("{sid}: {other:?}"),
            }
            assert!(keys.contains(&StateKey::User(format!("u{i}").into())));
        }
        // Sessions, their users and tokens, and the watermark.
        assert_eq!(changes.len(), 3 * n + 1);
        changes.clear();
        feed(
            &mut e,
            &[
                r#"{"id":"again","time":"2024-05-01T09:01:00Z","kind":"access","session_id":"s7","user_id":"u7","ip":"81.2.69.7"}"#,
            ],
        );
        e.drain_changes(&mut changes);
        assert!(
            changes
                .iter()
                .any(|(k, v)| *k == StateKey::Session("s7".into()) && v.is_some()),
            "{changes:?}"
        );
    }

    /// Every kind of value decodes to what was encoded, in both encodings; JSON values are
    /// what decoding the whole tagged enum gives (the format earlier versions wrote).
    #[test]
    fn every_kind_of_value_round_trips_in_both_encodings() {
        let mut kinds = std::collections::BTreeSet::new();
        let (mut binary_bytes, mut json_bytes) = (0, 0);
        for (k, v) in every_kind() {
            let v = v.expect("nothing evicted");
            let json = v.encode_as(ValueEncoding::Json);
            assert_eq!(json.first(), Some(&b'{'));
            assert_eq!(StateValue::decode(&k, &json).expect("json decodes"), v);
            let as_enum: StateValue = serde_json::from_slice(&json).expect("tagged enum");
            assert_eq!(as_enum, v);
            let binary = v.encode();
            assert_eq!(binary[..2], [BINARY_MAGIC, BINARY_VERSION]);
            assert_eq!(StateValue::decode(&k, &binary).expect("binary decodes"), v);
            binary_bytes += binary.len();
            json_bytes += json.len();
            kinds.insert(String::from_utf8_lossy(&k.encode()[..2]).into_owned());
        }
        assert_eq!(
            kinds.len(),
            5,
            "session, token, refresh, user, watermark: {kinds:?}"
        );
        assert!(
            binary_bytes * 2 < json_bytes,
            "{binary_bytes} vs {json_bytes}"
        );
    }

    /// The binary layout of every kind of value, pinned. Postcard writes no field names, so a
    /// state struct that gains, loses or reorders a field reads old records wrongly: when this
    /// fails because a struct changed, bump `BINARY_VERSION` and keep a decoder for the old
    /// layout; when it fails because the engine now keeps other values, update the pin (as
    /// when places came to hold coordinates as `f32`: same bytes but for the coordinates').
    #[test]
    fn binary_layout_is_pinned() {
        let mut fnv = 0xcbf2_9ce4_8422_2325u64;
        let mut len = 0;
        // In key order: the order a drain lists keys in is not part of the layout.
        let mut records: Vec<_> = every_kind()
            .into_iter()
            .map(|(k, v)| (k.encode(), v.expect("value").encode()))
            .collect();
        records.sort();
        for (k, v) in records {
            for b in k.into_iter().chain(v) {
                fnv = (fnv ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                len += 1;
            }
        }
        assert_eq!(
            (len, fnv),
            (633, 14_228_750_258_670_962_036),
            "binary changelog layout changed"
        );
    }

    /// A user's baseline is written when it learns something (a session, a place, a network,
    /// a device) and otherwise at most once per hour of activity (a hundredth of the default
    /// 90-day `user_ttl`, capped at an hour); restored from those records it equals the
    /// original but for a `last_seen` at most an hour old.
    #[test]
    fn the_user_baseline_is_written_when_it_changes() {
        let mut e = Engine::new(&EngineConfig::default()).expect("defaults");
        e.track_changes();
        let at = |id: &str, t: &str, session: &str, asn: u32| -> String {
            format!(
                r#"{{"id":"{id}","time":"2024-05-01T{t}Z","kind":"access","session_id":"{session}","user_id":"u","ip":"81.2.69.1","geo":{{"lat":51.5,"lon":-0.12,"country":"GB","asn":{asn}}}}}"#
            )
        };
        let mut all = Vec::new();
        let mut step = |e: &mut Engine, line: String| {
            feed(e, &[line.as_str()]);
            let mut out = Vec::new();
            e.drain_changes(&mut out);
            let user = out.iter().any(|(k, _)| *k == StateKey::User("u".into()));
            let session = out.iter().any(|(k, _)| matches!(k, StateKey::Session(_)));
            all.extend(out);
            (user, session)
        };
        let unlocated = r#"{"id":"0","time":"2024-05-01T09:00:00Z","kind":"access","session_id":"s","user_id":"u"}"#;
        assert_eq!(step(&mut e, unlocated.into()), (true, true), "first event");
        assert_eq!(
            step(&mut e, at("1", "09:00:10", "s", 2856)),
            (true, true),
            "a place"
        );
        assert_eq!(
            step(&mut e, at("2", "09:00:20", "s", 2856)),
            (false, true),
            "nothing new"
        );
        assert_eq!(
            step(&mut e, at("3", "09:00:55", "s", 2856)),
            (false, true),
            "nothing new"
        );
        assert_eq!(
            step(&mut e, at("4", "09:59:55", "s", 2856)),
            (false, true),
            "same hour"
        );
        assert_eq!(
            step(&mut e, at("5", "10:00:05", "s", 2856)),
            (true, true),
            "next hour"
        );
        assert_eq!(
            step(&mut e, at("6", "10:00:40", "s2", 2856)),
            (true, true),
            "a new session"
        );
        assert_eq!(
            step(&mut e, at("7", "10:59:59", "s2", 2856)),
            (false, true),
            "nothing new"
        );
        let mut restored = Engine::new(&EngineConfig::default()).expect("defaults");
        for (k, v) in all {
            restored.restore(k, v);
        }
        let (mut got, want) = (
            restored.users.get("u").cloned().expect("restored"),
            e.users.get("u").cloned().expect("live"),
        );
        assert!(
            want.last_seen - got.last_seen < 3_600_000,
            "{got:?} vs {want:?}"
        );
        got.last_seen = want.last_seen;
        assert_eq!(got, want);
    }

    /// A token binding is written when it is created or its session ends, and otherwise at
    /// most once per `token_ttl / 100` (14.4 minutes for the default 24 hours, periods counted
    /// from the epoch: 09:07:12, 09:21:36, ...) of use; restored from those records it equals
    /// the original but for a `last_seen` at most that old.
    #[test]
    fn a_token_binding_is_written_when_it_changes() {
        let mut e = Engine::new(&EngineConfig::default()).expect("defaults");
        e.track_changes();
        let use_at = |id: &str, t: &str, kind: &str| -> String {
            format!(
                r#"{{"id":"{id}","time":"2024-05-01T{t}Z","kind":"{kind}","session_id":"s","user_id":"u","token_id":"jti-1","ip":"81.2.69.1"}}"#
            )
        };
        let token = StateKey::Token(vigil_model::token::TokenHasher::new(b"k").hash("jti-1"));
        let mut all = Vec::new();
        let mut written = |e: &mut Engine, line: String| {
            feed(e, &[line.as_str()]);
            let mut out = Vec::new();
            e.drain_changes(&mut out);
            let hit = out.iter().any(|(k, _)| *k == token);
            all.extend(out);
            hit
        };
        assert!(
            written(&mut e, use_at("1", "09:08:00", "access")),
            "created"
        );
        assert!(
            !written(&mut e, use_at("2", "09:15:00", "access")),
            "same period"
        );
        assert!(
            !written(&mut e, use_at("3", "09:21:00", "access")),
            "same period"
        );
        assert!(
            written(&mut e, use_at("4", "09:22:00", "access")),
            "next period"
        );
        assert!(
            !written(&mut e, use_at("5", "09:30:00", "access")),
            "same period"
        );
        assert!(written(&mut e, use_at("6", "09:31:00", "logout")), "ended");
        let mut restored = Engine::new(&EngineConfig::default()).expect("defaults");
        for (k, v) in all {
            restored.restore(k, v);
        }
        let StateKey::Token(h) = token else {
            unreachable!("a token key")
        };
        let (got, want) = (
            restored.tokens.get(&h).cloned().expect("restored"),
            e.tokens.get(&h).cloned().expect("live"),
        );
        assert_eq!(got, want, "the end was written with its last use");
    }

    /// Bad records are refused with a reason, in both encodings.
    #[test]
    fn bad_values_are_refused_with_a_reason() {
        let key = StateKey::Token(TokenHash::from_hex(&"ab".repeat(16)).expect("hex"));
        let err = StateValue::decode(&key, br#"{"v1":"bogus"}"#).expect_err("unknown tag");
        assert!(err.to_string().contains("unknown variant `bogus`"), "{err}");
        let err = StateValue::decode(&key, br#"{"ms":1}"#).expect_err("no tag");
        assert!(err.to_string().contains("missing field `v1`"), "{err}");
        let session = StateKey::Session("s".into());
        let watermark = StateValue::Watermark { ms: 7 }.encode();
        let err = StateValue::decode(&session, &watermark).expect_err("kind");
        assert!(err.to_string().contains("does not match the key"), "{err}");
        let mut newer = watermark.clone();
        newer[1] = BINARY_VERSION + 1;
        let err = StateValue::decode(&StateKey::Watermark, &newer).expect_err("version");
        assert!(
            err.to_string().contains("not one this build reads"),
            "{err}"
        );
        let mut longer = watermark.clone();
        longer.push(0);
        let err = StateValue::decode(&StateKey::Watermark, &longer).expect_err("trailing");
        assert!(err.to_string().contains("left over"), "{err}");
        let err = StateValue::decode(&StateKey::Watermark, &watermark[..3]).expect_err("short");
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn evictions_become_tombstones_and_bad_records_are_errors() {
        let mut cfg = EngineConfig::default();
        cfg.state.max_sessions = 1;
        let mut e = Engine::new(&cfg).expect("valid");
        e.track_changes();
        feed(
            &mut e,
            &[
                r#"{"id":"1","time":"2024-05-01T09:00:00Z","kind":"access","session_id":"a","user_id":"u"}"#,
                r#"{"id":"2","time":"2024-05-01T09:00:01Z","kind":"access","session_id":"b","user_id":"u"}"#,
            ],
        );
        let mut out = Vec::new();
        e.drain_changes(&mut out);
        assert!(
            out.contains(&(StateKey::Session("a".into()), None)),
            "{out:?}"
        );
        assert!(StateKey::decode(b"x:1").is_err());
        let key = StateKey::Session("a".into());
        assert!(StateValue::decode(&key, b"{}").is_err());
        assert!(StateValue::decode(&key, &StateValue::Watermark { ms: 1 }.encode()).is_err());
    }
}
