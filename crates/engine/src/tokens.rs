//! Cross-session views keyed by token: who a token (or refresh token) belongs to.
//!
//! These are keyed stages of their own, not fields of a session: a token's history must be
//! found from any session that presents it. In one process (replay) they sit beside the
//! session table; in the Kafka runtime they are owned by the same partition task, so inputs
//! must be partitioned so a token's uses meet (see docs/ARCHITECTURE.md).

use crate::state::{Aged, OptTime};
use crate::ua::UaInfo;

/// The first session, device and client a token was seen with.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TokenBinding {
    /// Session that first used or received the token.
    pub session_id: Box<str>,
    /// Device fingerprint hash at first use, 0 when unknown.
    pub device: u64,
    /// Client family at first use.
    pub ua: Option<UaInfo>,
    /// First seen, epoch ms.
    pub first_seen: i64,
    /// Last seen, epoch ms.
    pub last_seen: i64,
    /// When the owning session ended (logout/revocation), if it did.
    pub ended_at: OptTime,
    /// When the token was reported exposed; any later use is replay.
    #[serde(default)]
    pub exposed_at: OptTime,
}

/// The binding's cache line (the session id's text lives apart and is left to the event's
/// processing).
impl crate::state::Warm for TokenBinding {
    #[inline]
    fn warm(&self) {
        crate::state::fetch(&self.session_id);
        crate::state::fetch(&self.last_seen);
    }
}

impl Aged for TokenBinding {
    fn first_seen(&self) -> i64 {
        self.first_seen
    }
    fn last_seen(&self) -> i64 {
        self.last_seen
    }
}

/// A refresh token's life: issued, then redeemed (rotated) once.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RefreshState {
    /// Session the refresh token belongs to.
    pub session_id: Box<str>,
    /// When it was first redeemed, epoch ms.
    pub redeemed_at: OptTime,
    /// Device fingerprint hash at first redemption.
    pub redeemed_device: u64,
    /// IP hash at first redemption.
    pub redeemed_ip: u64,
    /// First seen, epoch ms.
    pub first_seen: i64,
    /// Last seen, epoch ms.
    pub last_seen: i64,
}

impl Aged for RefreshState {
    fn first_seen(&self) -> i64 {
        self.first_seen
    }
    fn last_seen(&self) -> i64 {
        self.last_seen
    }
}
