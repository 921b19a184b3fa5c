//! The engine's durable state as key/value records, for a compacted changelog.
//!
//! The runtime asks for what changed since its last commit ([`Engine::drain_changes`]) and
//! writes it to the partition's changelog; on assignment it feeds the changelog back
//! ([`Engine::restore`]). A `None` value is a tombstone: the key was evicted.
//!
//! Encoding: keys are `s:<session id>`, `t:<token hash hex>`, `r:<refresh hash hex>`,
//! `u:<user id>` (the user's baseline) and `w:` (the watermark); values are JSON of the state structs, versioned by a leading `v1` field.

use serde::{Deserialize, Serialize};
use vigil_model::TokenHash;

use crate::engine::Engine;
use crate::state::SessionState;
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
        match self {
            Self::Session(id) => [b"s:", id.as_bytes()].concat(),
            Self::Token(h) => [b"t:", h.to_hex().as_bytes()].concat(),
            Self::Refresh(h) => [b"r:", h.to_hex().as_bytes()].concat(),
            Self::User(id) => [b"u:", id.as_bytes()].concat(),
            Self::Watermark => b"w:".to_vec(),
        }
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
    /// Encodes the value.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a value read under `key`, checking that the kinds agree.
    pub fn decode(key: &StateKey, bytes: &[u8]) -> Result<Self, DecodeError> {
        let err = |reason: String| DecodeError::Value {
            key: String::from_utf8_lossy(&key.encode()).into_owned(),
            reason,
        };
        let v: Self = serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?;
        let agrees = matches!(
            (key, &v),
            (StateKey::Session(_), Self::Session(_))
                | (StateKey::Token(_), Self::Token(_))
                | (StateKey::Refresh(_), Self::Refresh(_))
                | (StateKey::User(_), Self::User(_))
                | (StateKey::Watermark, Self::Watermark { .. })
        );
        if agrees {
            Ok(v)
        } else {
            Err(err("value kind does not match the key".into()))
        }
    }
}

impl Engine {
    /// Appends every state change since the last call (or since [`Engine::track_changes`]):
    /// the current value of each key touched, or `None` for keys evicted.
    pub fn drain_changes(&mut self, out: &mut Vec<(StateKey, Option<StateValue>)>) {
        self.track_changes();
        let dirty = std::mem::take(&mut self.dirty);
        for key in self.sessions.take_evicted() {
            out.push((StateKey::Session(key), None));
        }
        for key in self.tokens.take_evicted() {
            out.push((StateKey::Token(key), None));
        }
        for key in self.refresh.take_evicted() {
            out.push((StateKey::Refresh(key), None));
        }
        for key in self.users.take_evicted() {
            out.push((StateKey::User(key), None));
        }
        for key in dirty {
            let value = match &key {
                StateKey::Session(id) => self
                    .sessions
                    .get(&**id)
                    .map(|s| StateValue::Session(Box::new(s.clone()))),
                StateKey::Token(h) => self.tokens.get(h).cloned().map(StateValue::Token),
                StateKey::Refresh(h) => self.refresh.get(h).cloned().map(StateValue::Refresh),
                StateKey::User(id) => self.users.get(&**id).cloned().map(StateValue::User),
                StateKey::Watermark => continue,
            };
            out.push((key, value));
        }
        if self.watermark != i64::MIN && self.watermark != self.persisted_watermark {
            self.persisted_watermark = self.watermark;
            out.push((
                StateKey::Watermark,
                Some(StateValue::Watermark { ms: self.watermark }),
            ));
        }
    }

    /// Applies one changelog record (a `None` value removes the key).
    pub fn restore(&mut self, key: StateKey, value: Option<StateValue>) {
        match (key, value) {
            (StateKey::Session(id), Some(StateValue::Session(s))) => {
                self.sessions.put(id, *s);
            }
            (StateKey::Token(h), Some(StateValue::Token(t))) => {
                self.tokens.put(h, t);
            }
            (StateKey::Refresh(h), Some(StateValue::Refresh(r))) => {
                self.refresh.put(h, r);
            }
            (StateKey::User(id), Some(StateValue::User(u))) => {
                self.users.put(id, u);
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
