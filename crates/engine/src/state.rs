//! Per-session state and the bounded table that owns it.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};
use vigil_model::{Endpoint, SessionEvent, WindowStats};

use crate::ua::UaInfo;
use crate::window::{DistinctWindow, RateCounter};

/// A fast, non-cryptographic 64-bit hash of a string, for compact state.
pub fn hash_str(s: &str) -> u64 {
    FxBuildHasher.hash_one(s)
}

/// Pushes onto a list that never holds more than `max` entries, growing its allocation in
/// steps of 1, 2, 4, ... up to `max` instead of `Vec`'s first step of four: most sessions keep
/// one or two places, networks and findings, and a million sessions pay for the spare room.
pub fn push_capped<T>(list: &mut Vec<T>, value: T, max: usize) {
    if list.len() == list.capacity() {
        let room = max.saturating_sub(list.len()).max(1);
        list.reserve_exact(list.len().max(1).min(room));
    }
    list.push(value);
}

/// One copy of each string many sessions share (user agents, cities, network names,
/// countries), handed out as `Arc<str>`: a hundred thousand sessions of one browser build hold
/// its user agent once. Strings no session holds any more go at the next [`Strings::purge`].
#[derive(Debug, Default)]
pub struct Strings {
    set: FxHashSet<Arc<str>>,
}

impl Strings {
    /// The shared copy of `s`.
    pub fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.set.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.set.insert(a.clone());
        a
    }

    /// Drops the strings only this table still holds.
    pub fn purge(&mut self) {
        self.set.retain(|a| Arc::strong_count(a) > 1);
    }

    /// Distinct strings held.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether no string is held.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// The endpoint of a session's previous event, shown as "before" in alerts, kept compactly:
/// the address as an address and the strings sessions share through [`Strings`]. It goes to
/// the changelog exactly as an [`Endpoint`] does (same fields, same encoding).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LastEndpoint {
    /// Client IP.
    pub ip: Option<IpAddr>,
    /// Country.
    pub country: Option<Arc<str>>,
    /// City.
    pub city: Option<Arc<str>>,
    /// Latitude.
    pub lat: Option<f64>,
    /// Longitude.
    pub lon: Option<f64>,
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// Autonomous system organisation.
    pub as_org: Option<Arc<str>>,
    /// User agent.
    pub user_agent: Option<Arc<str>>,
    /// Device fingerprint.
    pub device_id: Option<Box<str>>,
    /// When the session was seen there, epoch ms.
    pub time_ms: Option<i64>,
}

impl LastEndpoint {
    /// Makes this the endpoint `ev` came from; unchanged strings are kept as they are.
    pub fn assign(&mut self, ev: &SessionEvent, strings: &mut Strings) {
        fn shared(slot: &mut Option<Arc<str>>, v: Option<&str>, strings: &mut Strings) {
            match (slot.as_deref(), v) {
                (Some(cur), Some(v)) if cur == v => {}
                (_, Some(v)) => *slot = Some(strings.get(v)),
                (_, None) => *slot = None,
            }
        }
        self.ip = ev.ip;
        shared(&mut self.country, ev.geo.country.as_deref(), strings);
        shared(&mut self.city, ev.geo.city.as_deref(), strings);
        self.lat = ev.geo.lat;
        self.lon = ev.geo.lon;
        self.asn = ev.geo.asn;
        shared(&mut self.as_org, ev.geo.as_org.as_deref(), strings);
        shared(&mut self.user_agent, ev.user_agent.as_deref(), strings);
        match (self.device_id.as_deref(), ev.device_id.as_deref()) {
            (Some(cur), Some(v)) if cur == v => {}
            (_, v) => self.device_id = v.map(Into::into),
        }
        self.time_ms = Some(ev.time_ms);
    }

    /// Shares this endpoint's strings through `strings` (for state read from the changelog).
    pub fn intern(&mut self, strings: &mut Strings) {
        for slot in [
            &mut self.country,
            &mut self.city,
            &mut self.as_org,
            &mut self.user_agent,
        ] {
            if let Some(v) = slot.as_mut() {
                *v = strings.get(v);
            }
        }
    }

    /// The endpoint as alerts show it.
    pub fn to_endpoint(&self) -> Endpoint {
        Endpoint {
            ip: self.ip.map(|i| i.to_string()),
            country: self.country.as_deref().map(str::to_owned),
            city: self.city.as_deref().map(str::to_owned),
            lat: self.lat,
            lon: self.lon,
            asn: self.asn,
            as_org: self.as_org.as_deref().map(str::to_owned),
            user_agent: self.user_agent.as_deref().map(str::to_owned),
            device_id: self.device_id.as_deref().map(str::to_owned),
            time_ms: self.time_ms,
        }
    }
}

impl From<Endpoint> for LastEndpoint {
    fn from(e: Endpoint) -> Self {
        Self {
            // Written from an address, so it parses; anything else is not an address to show.
            ip: e.ip.as_deref().and_then(|i| i.parse().ok()),
            country: e.country.map(Into::into),
            city: e.city.map(Into::into),
            lat: e.lat,
            lon: e.lon,
            asn: e.asn,
            as_org: e.as_org.map(Into::into),
            user_agent: e.user_agent.map(Into::into),
            device_id: e.device_id.map(Into::into),
            time_ms: e.time_ms,
        }
    }
}

impl serde::Serialize for LastEndpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        // Field for field what `Endpoint` writes, so either reads the other's records.
        let mut st = s.serialize_struct("Endpoint", 10)?;
        st.serialize_field("ip", &self.ip.map(|i| i.to_string()))?;
        st.serialize_field("country", &self.country.as_deref())?;
        st.serialize_field("city", &self.city.as_deref())?;
        st.serialize_field("lat", &self.lat)?;
        st.serialize_field("lon", &self.lon)?;
        st.serialize_field("asn", &self.asn)?;
        st.serialize_field("as_org", &self.as_org.as_deref())?;
        st.serialize_field("user_agent", &self.user_agent.as_deref())?;
        st.serialize_field("device_id", &self.device_id.as_deref())?;
        st.serialize_field("time_ms", &self.time_ms)?;
        st.end()
    }
}

impl<'de> serde::Deserialize<'de> for LastEndpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Endpoint::deserialize(d).map(Self::from)
    }
}

/// A located sighting of the session.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Place {
    /// Latitude, degrees (absent when only the network is known).
    pub coords: Option<(f64, f64)>,
    /// Accuracy radius, km.
    pub accuracy_km: u32,
    /// Autonomous system number, 0 when unknown.
    pub asn: u32,
    /// Hash of the upper-cased country, 0 when unknown.
    pub country: u64,
    /// Hash of the device fingerprint, 0 when unknown.
    pub device: u64,
    /// When the session was first seen here in this visit, epoch ms.
    pub first_seen: i64,
    /// When the session was last seen here, epoch ms.
    pub last_seen: i64,
}

impl Place {
    /// Whether two places are the same for concurrency purposes: within `same_km` when both
    /// have coordinates, else the same ASN.
    pub fn same_as(&self, other: &Place, same_km: f64) -> bool {
        match (self.coords, other.coords) {
            (Some(a), Some(b)) => crate::geo::distance_km(a, b) <= same_km,
            _ => self.asn != 0 && self.asn == other.asn,
        }
    }
}

/// What the engine remembers about one live session.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SessionState {
    /// User the session belongs to.
    pub user_id: Box<str>,
    /// Tenant.
    pub tenant: Option<Box<str>>,
    /// First event time, epoch ms.
    pub first_seen: i64,
    /// Latest event time, epoch ms.
    pub last_seen: i64,
    /// Events seen.
    pub events: u32,
    /// Where the session was last seen with location or network known.
    pub last_place: Option<Place>,
    /// The most recent distinct places (newest last), for concurrent-use detection.
    pub places: Vec<Place>,
    /// Countries seen in this session (hashes).
    pub countries: Vec<u64>,
    /// ASNs seen in this session.
    pub asns: Vec<u32>,
    /// The first device fingerprint seen (hash).
    pub device: Option<u64>,
    /// The first user agent's family and OS.
    pub ua: Option<UaInfo>,
    /// Distinct device fingerprints in the window.
    pub devices: DistinctWindow<4>,
    /// Distinct IPs in the window.
    pub ips: DistinctWindow<8>,
    /// Distinct user agents in the window.
    pub user_agents: DistinctWindow<4>,
    /// Distinct ASNs in the window.
    pub asn_window: DistinctWindow<4>,
    /// Events per minute.
    pub rate: RateCounter,
    /// Scopes granted early in the session: its baseline.
    pub baseline_scopes: Vec<Box<str>>,
    /// Until when (epoch ms) newly granted scopes still join the baseline.
    pub baseline_until: Option<i64>,
    /// When the session ended (logout or IdP revocation), if it did.
    pub ended_at: Option<i64>,
    /// Whether Vigil already revoked the session.
    pub revoked: bool,
    /// Recent findings' (time, confidence), for combining evidence.
    pub recent_findings: Vec<(i64, u8)>,
    /// The detector (index in `detectors::NAMES`) of each of `recent_findings`, in step
    /// with it; absent in state written before it existed (each finding then counts alone).
    #[serde(default)]
    pub recent_finding_detectors: Vec<u8>,
    /// The endpoint of the previous event, shown as "before" in alerts.
    pub last_endpoint: LastEndpoint,
    /// Hashes of the latest source record ids, oldest first: a record delivered again (Kafka
    /// redelivers the uncommitted tail after a crash or rebalance) is recognised and skipped.
    #[serde(default)]
    pub recent_ids: Vec<u64>,
    /// The kind of identity holding the session (see [`crate::governance`]).
    #[serde(default)]
    pub identity: Option<vigil_model::IdentityType>,
    /// The session that minted this one (delegation), when known.
    #[serde(default)]
    pub parent: Option<Box<str>>,
    /// Sessions this one minted, held here (bounded), revoked when it ends.
    #[serde(default)]
    pub children: Vec<Box<str>>,
    /// The application the session was first seen with, for the inventory.
    #[serde(default)]
    pub app: Option<Box<str>>,
}

impl SessionState {
    /// A new session first seen with `ev`.
    pub fn new(ev: &SessionEvent) -> Self {
        Self {
            user_id: ev.user_id.as_str().into(),
            tenant: ev.tenant.as_deref().map(Into::into),
            first_seen: ev.time_ms,
            last_seen: ev.time_ms,
            events: 0,
            last_place: None,
            places: Vec::new(),
            countries: Vec::new(),
            asns: Vec::new(),
            device: None,
            ua: None,
            devices: DistinctWindow::default(),
            ips: DistinctWindow::default(),
            user_agents: DistinctWindow::default(),
            asn_window: DistinctWindow::default(),
            rate: RateCounter::default(),
            baseline_scopes: Vec::new(),
            baseline_until: None,
            ended_at: None,
            revoked: false,
            recent_findings: Vec::new(),
            recent_finding_detectors: Vec::new(),
            last_endpoint: LastEndpoint::default(),
            recent_ids: Vec::new(),
            identity: ev.identity_type,
            parent: ev.parent_session_id.as_deref().map(Into::into),
            children: Vec::new(),
            app: ev.app.as_deref().map(Into::into),
        }
    }

    /// Window statistics at `now`.
    pub fn window_stats(&self, now: i64, window_ms: i64) -> WindowStats {
        WindowStats {
            events_per_minute: self.rate.per_minute(now),
            distinct_ips: self.ips.count(now, window_ms) as u32,
            distinct_asns: self.asn_window.count(now, window_ms) as u32,
            distinct_devices: self.devices.count(now, window_ms) as u32,
            distinct_user_agents: self.user_agents.count(now, window_ms) as u32,
        }
    }
}

/// Why a session left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Eviction {
    /// No event for longer than the idle TTL.
    Idle,
    /// Older than the absolute TTL.
    Absolute,
    /// The table was full.
    Capacity,
}

/// Counters of evictions by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvictionCounts {
    /// Idle TTL evictions.
    pub idle: u64,
    /// Absolute TTL evictions.
    pub absolute: u64,
    /// Capacity evictions.
    pub capacity: u64,
}

/// A bounded map from a key to state, with idle and absolute TTLs and a hard cap.
///
/// Owned by one partition task: no locks. Expired entries go in periodic sweeps driven by
/// event time; at the cap the least recently seen hundredth goes at once, so the cost of
/// making room is amortised over many inserts.
#[derive(Debug)]
pub struct BoundedTable<K, V> {
    map: FxHashMap<K, V>,
    idle_ttl_ms: i64,
    absolute_ttl_ms: i64,
    cap: usize,
    /// Evictions so far.
    pub evictions: EvictionCounts,
    /// Keys evicted since the last [`BoundedTable::take_evicted`], when tracking.
    evicted: Option<Vec<K>>,
}

/// What a [`BoundedTable`] needs to know about its values.
pub trait Aged {
    /// First time seen, epoch ms.
    fn first_seen(&self) -> i64;
    /// Last time seen, epoch ms.
    fn last_seen(&self) -> i64;
}

impl Aged for SessionState {
    fn first_seen(&self) -> i64 {
        self.first_seen
    }
    fn last_seen(&self) -> i64 {
        self.last_seen
    }
}

impl<T: Aged> Aged for Box<T> {
    fn first_seen(&self) -> i64 {
        (**self).first_seen()
    }
    fn last_seen(&self) -> i64 {
        (**self).last_seen()
    }
}

impl<K: Hash + Eq + Clone, V: Aged> BoundedTable<K, V> {
    /// An empty table.
    pub fn new(idle_ttl_ms: i64, absolute_ttl_ms: i64, cap: usize) -> Self {
        Self {
            map: FxHashMap::default(),
            idle_ttl_ms,
            absolute_ttl_ms,
            cap: cap.max(1),
            evictions: EvictionCounts::default(),
            evicted: None,
        }
    }

    /// Starts remembering evicted keys (for changelog tombstones).
    pub fn track_evictions(&mut self) {
        self.evicted.get_or_insert_with(Vec::new);
    }

    /// Keys evicted since the last call.
    pub fn take_evicted(&mut self) -> Vec<K> {
        self.evicted
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Removes an entry.
    pub fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.map.remove(key)
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The entry for `key`.
    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.map.get(key)
    }

    /// The entry for `key`, mutable.
    pub fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.map.get_mut(key)
    }

    /// Inserts a new entry, making room first if the table is full.
    pub fn insert(&mut self, key: K, value: V) -> &mut V {
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            self.evict_oldest();
        }
        self.map.entry(key).or_insert(value)
    }

    /// Inserts or replaces an entry, making room first if the table is full.
    pub fn put(&mut self, key: K, value: V) {
        if let Some(slot) = self.map.get_mut(&key) {
            *slot = value;
        } else {
            self.insert(key, value);
        }
    }

    /// Iterates over all entries.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }

    /// Removes entries idle or older than their TTLs at `now`; returns how many went.
    pub fn sweep(&mut self, now: i64) -> usize {
        let before = self.map.len();
        let (idle, abs) = (self.idle_ttl_ms, self.absolute_ttl_ms);
        let mut counts = self.evictions;
        let evicted = &mut self.evicted;
        self.map.retain(|k, v| {
            let keep = if now - v.first_seen() > abs {
                counts.absolute += 1;
                false
            } else if now - v.last_seen() > idle {
                counts.idle += 1;
                false
            } else {
                true
            };
            if !keep && let Some(e) = evicted.as_mut() {
                e.push(k.clone());
            }
            keep
        });
        self.evictions = counts;
        before - self.map.len()
    }

    fn evict_oldest(&mut self) {
        let n = (self.cap / 100).max(1);
        let mut ages: Vec<i64> = self.map.values().map(Aged::last_seen).collect();
        let idx = (n - 1).min(ages.len().saturating_sub(1));
        let (_, cutoff, _) = ages.select_nth_unstable(idx);
        let cutoff = *cutoff;
        let mut removed = 0u64;
        let evicted = &mut self.evicted;
        self.map.retain(|k, v| {
            if removed < n as u64 && v.last_seen() <= cutoff {
                removed += 1;
                if let Some(e) = evicted.as_mut() {
                    e.push(k.clone());
                }
                false
            } else {
                true
            }
        });
        self.evictions.capacity += removed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct T(i64, i64);
    impl Aged for T {
        fn first_seen(&self) -> i64 {
            self.0
        }
        fn last_seen(&self) -> i64 {
            self.1
        }
    }

    #[test]
    fn sweeps_by_idle_and_absolute_ttl() {
        let mut t = BoundedTable::new(100, 1000, 10);
        t.insert("idle", T(500, 510));
        t.insert("old", T(0, 1150));
        t.insert("fresh", T(1100, 1150));
        assert_eq!(t.sweep(1200), 2);
        assert!(t.get("fresh").is_some());
        assert_eq!(
            t.evictions,
            EvictionCounts {
                idle: 1,
                absolute: 1,
                capacity: 0
            }
        );
    }

    #[test]
    fn capped_lists_grow_in_small_steps_up_to_their_bound() {
        let mut v = Vec::new();
        let mut caps = Vec::new();
        for i in 0..8 {
            push_capped(&mut v, i, 6);
            caps.push(v.capacity());
        }
        assert_eq!(v, (0..8).collect::<Vec<_>>());
        assert_eq!(caps[..6], [1, 2, 4, 4, 6, 6]);
    }

    #[test]
    fn shared_strings_are_held_once_and_purged_when_unused() {
        let mut strings = Strings::default();
        let a = strings.get("Mozilla/5.0");
        let b = strings.get("Mozilla/5.0");
        assert!(Arc::ptr_eq(&a, &b));
        let c = strings.get("curl/8.4");
        assert_eq!(strings.len(), 2);
        drop(c);
        strings.purge();
        assert_eq!(strings.len(), 1, "curl/8.4 is held by nobody");
        drop((a, b));
        strings.purge();
        assert!(strings.is_empty());
    }

    /// Kept in place event after event, the compact endpoint shows what `Endpoint::of` builds
    /// from the latest event (the native samples vary and leave out address, place, network,
    /// client and device).
    #[test]
    fn assigning_the_last_endpoint_equals_building_it() {
        use vigil_model::adapters::{AdapterContext, InputFormat, parse_record};
        let ctx = AdapterContext::new(b"k");
        let text = include_str!("../../../tests/data/samples/native.jsonl");
        let (mut strings, mut ep, mut n) = (Strings::default(), LastEndpoint::default(), 0);
        for line in text.lines() {
            let ev = parse_record(line.as_bytes(), InputFormat::Native, &ctx).expect("valid");
            ep.assign(&ev, &mut strings);
            assert_eq!(ep.to_endpoint(), Endpoint::of(&ev), "{line}");
            n += 1;
        }
        assert!(n > 50, "{n} samples");
    }

    /// The compact endpoint is written exactly as `Endpoint` writes itself, in JSON and in
    /// the binary changelog encoding, and reads back equal.
    #[test]
    fn last_endpoint_encodes_as_an_endpoint() {
        for ip in ["81.2.69.160", "2001:db8::7"] {
            let e = Endpoint {
                ip: Some(ip.into()),
                country: Some("GB".into()),
                city: Some("London".into()),
                lat: Some(51.5),
                lon: Some(-0.12),
                asn: Some(2856),
                as_org: None,
                user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
                device_id: Some("d1".into()),
                time_ms: Some(1_714_550_400_000),
            };
            let compact = LastEndpoint::from(e.clone());
            assert_eq!(compact.to_endpoint(), e);
            let json = serde_json::to_string(&compact).expect("json");
            assert_eq!(json, serde_json::to_string(&e).expect("json"));
            assert_eq!(
                serde_json::from_str::<LastEndpoint>(&json).expect("reads"),
                compact
            );
            let bin = postcard::to_allocvec(&compact).expect("binary");
            assert_eq!(bin, postcard::to_allocvec(&e).expect("binary"));
            assert_eq!(
                postcard::from_bytes::<LastEndpoint>(&bin).expect("reads"),
                compact
            );
        }
    }

    #[test]
    fn cap_evicts_least_recently_seen() {
        let mut t = BoundedTable::new(i64::MAX, i64::MAX, 3);
        t.insert("a", T(0, 5));
        t.insert("b", T(0, 1));
        t.insert("c", T(0, 9));
        t.insert("d", T(0, 10));
        assert_eq!(t.len(), 3);
        assert!(t.get("b").is_none());
        assert_eq!(t.evictions.capacity, 1);
    }
}
