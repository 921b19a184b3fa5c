//! What a user's sessions usually look like: the countries, networks and devices this user's
//! sessions have used, learned over a period before it is trusted.
//!
//! Keyed by user id, beside the session table in the same partition task. With inputs keyed
//! by user id (the recommended keying) every session of a user meets this one baseline, so
//! the view is complete and shared-nothing; with inputs keyed by session id each partition
//! learns the share of the user's sessions it sees, and a familiar place can look new.

use serde::{Deserialize, Serialize};

use crate::state::{Aged, Small};

/// Most countries, networks and devices remembered per user.
pub const MAX_PER_USER: usize = 16;

/// One user's baseline. Its lists are [`Small`]: most users' first few entries cost no
/// allocation of their own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserBaseline {
    /// First event of any of the user's sessions, epoch ms.
    pub first_seen: i64,
    /// Last event, epoch ms.
    pub last_seen: i64,
    /// Sessions started.
    pub sessions: u32,
    /// Country hashes the user's sessions used.
    pub countries: Small<[u64; 2]>,
    /// ASNs the user's sessions used.
    pub asns: Small<[u32; 4]>,
    /// Device fingerprint hashes the user's sessions used.
    pub devices: Small<[u64; 2]>,
    /// Where the user's sessions were located, to a tenth of a degree (see [`cell`]).
    #[serde(default)]
    pub places: Small<[u32; 4]>,
}

/// A location to a tenth of a degree (about 11 km), packed in 32 bits.
pub fn cell(lat: f64, lon: f64) -> u32 {
    let la = (lat.clamp(-90.0, 90.0) * 10.0).round() as i16;
    let lo = (lon.clamp(-180.0, 180.0) * 10.0).round() as i16;
    (u32::from(la as u16) << 16) | u32::from(lo as u16)
}

/// The centre of a [`cell`].
pub fn cell_coords(c: u32) -> (f64, f64) {
    let la = f64::from((c >> 16) as u16 as i16) / 10.0;
    let lo = f64::from((c & 0xffff) as u16 as i16) / 10.0;
    (la, lo)
}

impl UserBaseline {
    /// Remembers a value in a bounded list (the oldest goes when full); whether it was new.
    pub fn learn<A: smallvec::Array>(list: &mut Small<A>, v: A::Item) -> bool
    where
        A::Item: PartialEq + Copy,
    {
        if list.contains(&v) {
            return false;
        }
        if list.len() >= MAX_PER_USER {
            list.remove(0);
        }
        crate::state::push_capped(list, v, MAX_PER_USER);
        true
    }

    /// Whether any of the user's sessions was located within `km` of `at`.
    pub fn has_been_near(&self, at: (f64, f64), km: f64) -> bool {
        self.places
            .iter()
            .any(|&c| crate::geo::distance_km(cell_coords(c), at) <= km)
    }

    /// Whether the baseline has learned long enough, and from enough sessions, to be trusted.
    pub fn mature(&self, now: i64, learning_ms: i64, min_sessions: u32) -> bool {
        now - self.first_seen >= learning_ms && self.sessions >= min_sessions
    }
}

/// The baseline's cache lines (lists that outgrew their inline room live apart and are left
/// to the event's processing).
impl crate::state::Warm for UserBaseline {
    #[inline]
    fn warm(&self) {
        crate::state::fetch(&self.first_seen);
        crate::state::fetch(&self.countries);
        crate::state::fetch(&self.devices);
        crate::state::fetch(&self.places);
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

    #[test]
    fn places_round_trip_to_a_tenth_of_a_degree() {
        for (lat, lon) in [
            (52.52, 13.405),
            (-23.55, -46.63),
            (40.71, -74.0),
            (-90.0, 180.0),
        ] {
            let (a, o) = cell_coords(cell(lat, lon));
            assert!((a - lat).abs() <= 0.05 + 1e-9 && (o - lon).abs() <= 0.05 + 1e-9);
        }
        let mut b = UserBaseline::default();
        UserBaseline::learn(&mut b.places, cell(52.52, 13.405));
        assert!(b.has_been_near((52.6, 13.3), 25.0), "Berlin is near Berlin");
        assert!(
            !b.has_been_near((53.55, 9.99), 100.0),
            "Hamburg is 255 km away"
        );
    }
}
