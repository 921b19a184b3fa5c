//! What a user's sessions usually look like: the countries, networks and devices this user's
//! sessions have used, learned over a period before it is trusted.
//!
//! Keyed by user id, beside the session table in the same partition task. With inputs keyed
//! by user id (the recommended keying) every session of a user meets this one baseline, so
//! the view is complete and shared-nothing; with inputs keyed by session id each partition
//! learns the share of the user's sessions it sees, and a familiar place can look new.

use serde::{Deserialize, Serialize};

use crate::state::Aged;

/// Most countries, networks and devices remembered per user.
pub const MAX_PER_USER: usize = 16;

/// One user's baseline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserBaseline {
    /// First event of any of the user's sessions, epoch ms.
    pub first_seen: i64,
    /// Last event, epoch ms.
    pub last_seen: i64,
    /// Sessions started.
    pub sessions: u32,
    /// Country hashes the user's sessions used.
    pub countries: Vec<u64>,
    /// ASNs the user's sessions used.
    pub asns: Vec<u32>,
    /// Device fingerprint hashes the user's sessions used.
    pub devices: Vec<u64>,
}

impl UserBaseline {
    /// Remembers a value in a bounded list (the oldest goes when full).
    pub fn learn<T: PartialEq + Copy>(list: &mut Vec<T>, v: T) {
        if !list.contains(&v) {
            if list.len() >= MAX_PER_USER {
                list.remove(0);
            }
            list.push(v);
        }
    }

    /// Whether the baseline has learned long enough, and from enough sessions, to be trusted.
    pub fn mature(&self, now: i64, learning_ms: i64, min_sessions: u32) -> bool {
        now - self.first_seen >= learning_ms && self.sessions >= min_sessions
    }
}

impl Aged for UserBaseline {
    fn first_seen(&self) -> i64 {
        self.first_seen
    }
    fn last_seen(&self) -> i64 {
        self.last_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_bounded_and_maturity_needs_time_and_sessions() {
        let mut b = UserBaseline {
            first_seen: 0,
            ..Default::default()
        };
        for i in 0..40u32 {
            UserBaseline::learn(&mut b.asns, i);
        }
        assert_eq!(b.asns.len(), MAX_PER_USER);
        assert_eq!(b.asns[0], 24, "the oldest went first");
        b.sessions = 2;
        assert!(!b.mature(10, 100, 3));
        b.sessions = 3;
        assert!(!b.mature(10, 100, 3));
        assert!(b.mature(100, 100, 3));
    }
}
