//! Bounded, event-time windowed counters kept inside each session's state.
//!
//! Each structure has a fixed capacity so a session's state cannot grow with its traffic: a
//! session hammered from a thousand IPs costs the same memory as one used from two.

/// Distinct values seen within a sliding event-time window, at most `CAP` remembered.
///
/// When full, the value seen longest ago is forgotten; the count within the window is then a
/// lower bound, which is the safe direction for "more than N distinct" checks only up to `CAP`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DistinctWindow<const CAP: usize> {
    /// The first entry lives in the session itself (most sessions have one device, one
    /// client, one network); written as a list either way.
    entries: crate::state::Small<[(u64, i64); 1]>,
}

impl<const CAP: usize> DistinctWindow<CAP> {
    /// Records `value` seen at `t`.
    pub fn insert(&mut self, value: u64, t: i64) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.0 == value) {
            e.1 = e.1.max(t);
            return;
        }
        if self.entries.len() < CAP {
            crate::state::push_capped(&mut self.entries, (value, t), CAP);
        } else if let Some(oldest) = self.entries.iter_mut().min_by_key(|e| e.1) {
            *oldest = (value, t);
        }
    }

    /// How many distinct values were seen in `(now - window, now]`.
    pub fn count(&self, now: i64, window_ms: i64) -> usize {
        self.entries
            .iter()
            .filter(|e| e.1 > now - window_ms)
            .count()
    }

    /// Whether `value` was seen in the window.
    pub fn contains(&self, value: u64, now: i64, window_ms: i64) -> bool {
        self.entries
            .iter()
            .any(|e| e.0 == value && e.1 > now - window_ms)
    }
}

/// Events per minute: the current minute's count and the previous minute's.
///
/// The minute is held in 32 bits (minutes since 1970 reach 4,000 years either way; times
/// beyond are held at the bound), which with the counts makes 12 bytes instead of 16. The
/// changelog writes it as before: postcard writes `i32` and `i64` alike, as zigzag varints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RateCounter {
    minute: i32,
    current: u32,
    previous: u32,
}

/// The minute of `t` (epoch ms), as [`RateCounter`] holds it.
fn minute_of(t: i64) -> i32 {
    t.div_euclid(60_000)
        .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

impl RateCounter {
    /// Counts one event at `t` (late events within the grace count in their own minute
    /// only if it is the current or previous one).
    pub fn record(&mut self, t: i64) {
        let at = minute_of(t);
        let (m, minute) = (i64::from(at), i64::from(self.minute));
        if m == minute {
            self.current = self.current.saturating_add(1);
        } else if m == minute + 1 {
            self.previous = self.current;
            self.current = 1;
            self.minute = at;
        } else if m > minute {
            self.previous = 0;
            self.current = 1;
            self.minute = at;
        } else if m == minute - 1 {
            self.previous = self.previous.saturating_add(1);
        }
    }

    /// Events in the last full minute plus the current partial one, weighted by how much of
    /// the previous minute still lies in the 60-second window ending at `now`.
    pub fn per_minute(&self, now: i64) -> u32 {
        let m = i64::from(minute_of(now));
        let minute = i64::from(self.minute);
        if m == minute {
            let frac = 1.0 - (now.rem_euclid(60_000) as f64 / 60_000.0);
            self.current + (f64::from(self.previous) * frac).round() as u32
        } else if m == minute + 1 {
            let frac = 1.0 - (now.rem_euclid(60_000) as f64 / 60_000.0);
            (f64::from(self.current) * frac).round() as u32
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_window_counts_within_window_and_stays_bounded() {
        let mut w: DistinctWindow<4> = DistinctWindow::default();
        for (i, v) in [1u64, 2, 2, 3].iter().enumerate() {
            w.insert(*v, i as i64 * 1000);
        }
        assert_eq!(w.count(3000, 10_000), 3);
        assert_eq!(w.count(3000, 1500), 2);
        for v in 10..100 {
            w.insert(v, 5000 + v as i64);
        }
        assert_eq!(w.count(6000, 10_000), 4);
        assert!(w.contains(99, 6000, 10_000));
        assert!(!w.contains(1, 6000, 10_000));
    }

    #[test]
    fn rate_counter_slides() {
        let mut r = RateCounter::default();
        for t in (60_000..120_000).step_by(6_000) {
            r.record(t);
        }
        assert_eq!(r.per_minute(119_999), 10);
        r.record(120_000);
        assert_eq!(r.per_minute(150_000), 6);
        assert_eq!(r.per_minute(400_000), 0);
    }
}
