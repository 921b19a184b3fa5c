//! Per-session state and the bounded table that owns it.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;

use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashSet};
use vigil_model::text::Text;
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
/// (A [`Small`] list keeps its first few entries inside the session and grows the same way
/// once it spills.)
pub fn push_capped<L: CappedList>(list: &mut L, value: L::Item, max: usize) {
    let held = list.held();
    if held == list.capacity() {
        let room = max.saturating_sub(held).max(1);
        list.reserve_exact(held.max(1).min(room));
    }
    list.push(value);
}

/// A list whose entries live inside the value holding it while they fit in `A` (`[T; N]`)
/// and on the heap beyond: the short lists a session keeps cost no allocation of their own,
/// and no cache miss to reach. It is written and read exactly as a `Vec` of its entries.
pub type Small<A> = smallvec::SmallVec<A>;

/// The lists [`push_capped`] grows.
pub trait CappedList {
    /// Entry type.
    type Item;
    /// Entries held.
    fn held(&self) -> usize;
    /// Entries held without growing.
    fn capacity(&self) -> usize;
    /// Makes room for exactly `n` more.
    fn reserve_exact(&mut self, n: usize);
    /// Appends.
    fn push(&mut self, value: Self::Item);
}

impl<T> CappedList for Vec<T> {
    type Item = T;
    fn held(&self) -> usize {
        Vec::len(self)
    }
    fn capacity(&self) -> usize {
        Vec::capacity(self)
    }
    fn reserve_exact(&mut self, n: usize) {
        Vec::reserve_exact(self, n);
    }
    fn push(&mut self, value: T) {
        Vec::push(self, value);
    }
}

impl<A: smallvec::Array> CappedList for Small<A> {
    type Item = A::Item;
    fn held(&self) -> usize {
        smallvec::SmallVec::len(self)
    }
    fn capacity(&self) -> usize {
        smallvec::SmallVec::capacity(self)
    }
    fn reserve_exact(&mut self, n: usize) {
        smallvec::SmallVec::reserve_exact(self, n);
    }
    fn push(&mut self, value: A::Item) {
        smallvec::SmallVec::push(self, value);
    }
}

/// One copy of each string many sessions share (user agents, cities, network names,
/// countries), handed out as [`ArcStr`]: a hundred thousand sessions of one browser build hold
/// its user agent once. Strings no session holds any more go at the next [`Strings::purge`].
#[derive(Debug, Default)]
pub struct Strings {
    set: FxHashSet<ArcStr>,
}

/// A shared, immutable string whose handle is one pointer (the length lives beside the count
/// in its allocation): half an `Arc<str>`, which matters in a state held a million times.
pub type ArcStr = arcstr::ArcStr;

impl Strings {
    /// The shared copy of `s`.
    pub fn get(&mut self, s: &str) -> ArcStr {
        if let Some(a) = self.set.get(s) {
            return a.clone();
        }
        let a = ArcStr::from(s);
        self.set.insert(a.clone());
        a
    }

    /// Drops the strings only this table still holds.
    pub fn purge(&mut self) {
        // (An empty string is a static one, counted as `None`: it costs nothing to drop.)
        self.set
            .retain(|a| ArcStr::strong_count(a).is_some_and(|n| n > 1));
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
#[derive(Debug, Clone)]
pub struct LastEndpoint {
    /// Client IP.
    pub ip: Option<IpAddr>,
    /// Country.
    pub country: Option<ArcStr>,
    /// City.
    pub city: Option<ArcStr>,
    /// Latitude; NaN when unknown (no source writes NaN: JSON has none).
    lat: f64,
    /// Longitude; NaN when unknown.
    lon: f64,
    /// Autonomous system number; [`NO_ASN`] when unknown (see [`LastEndpoint::asn`]).
    asn: u32,
    /// Autonomous system organisation.
    pub as_org: Option<ArcStr>,
    /// User agent.
    pub user_agent: Option<ArcStr>,
    /// Device fingerprint.
    pub device_id: Option<Box<str>>,
    /// When the session was seen there, epoch ms, if known.
    time_ms: OptTime,
    /// Whether `device_id` is the session's first device (its hash is the session's
    /// `first_device`), as [`LastEndpoint::assign`] last found: an event from that device
    /// then leaves the text unread. The text is a heap block of its own per session, a cache
    /// miss to compare. In memory only (false when read back: the next event compares).
    device_is_first: bool,
}

/// [`LastEndpoint`]'s time before any event.
const NO_TIME: i64 = i64::MIN;

/// An optional time (epoch ms) in eight bytes instead of sixteen: [`NO_TIME`] stands for none.
/// Written and read exactly as an `Option<i64>`, so a state struct may hold it in place of one
/// without changing what the changelog holds. (A time of `i64::MIN` itself reads as none;
/// event times are far from it.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptTime(i64);

impl OptTime {
    /// No time.
    pub const NONE: Self = Self(NO_TIME);

    /// The time, if any.
    pub fn get(self) -> Option<i64> {
        (self.0 != NO_TIME).then_some(self.0)
    }

    /// Whether there is no time.
    pub fn is_none(self) -> bool {
        self.0 == NO_TIME
    }

    /// Sets the time to `t` unless one is set; returns the time held.
    pub fn get_or_insert(&mut self, t: i64) -> i64 {
        if self.0 == NO_TIME {
            self.0 = t;
        }
        self.0
    }
}

impl Default for OptTime {
    fn default() -> Self {
        Self::NONE
    }
}

impl From<Option<i64>> for OptTime {
    fn from(t: Option<i64>) -> Self {
        t.map_or(Self::NONE, Self)
    }
}

impl serde::Serialize for OptTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for OptTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<i64>::deserialize(d).map(Self::from)
    }
}

/// [`LastEndpoint`]'s ASN when unknown: the last 32-bit ASN, reserved (RFC 7300), which no
/// network announces.
const NO_ASN: u32 = u32::MAX;

/// Source record ids a session remembers, to recognise a record delivered again.
pub const RECENT_IDS: usize = 8;

fn opt_f64(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

impl PartialEq for LastEndpoint {
    fn eq(&self, o: &Self) -> bool {
        self.ip == o.ip
            && self.country == o.country
            && self.city == o.city
            && opt_f64(self.lat) == opt_f64(o.lat)
            && opt_f64(self.lon) == opt_f64(o.lon)
            && self.asn == o.asn
            && self.as_org == o.as_org
            && self.user_agent == o.user_agent
            && self.device_id == o.device_id
            && self.time_ms == o.time_ms
    }
}

impl Default for LastEndpoint {
    fn default() -> Self {
        Self {
            ip: None,
            country: None,
            city: None,
            lat: f64::NAN,
            lon: f64::NAN,
            asn: NO_ASN,
            as_org: None,
            user_agent: None,
            device_id: None,
            time_ms: OptTime::NONE,
            device_is_first: false,
        }
    }
}

impl LastEndpoint {
    /// Makes this the endpoint `ev` came from; unchanged strings are kept as they are.
    /// `device` is the hash of the event's device id ([`crate::state::hash_str`]) and
    /// `first_device` the session's first device's (0 when none): a device id whose hash is
    /// the first device's is taken for the text already held when that text is the first
    /// device's too, as the detectors take devices by their hashes.
    pub fn assign(
        &mut self,
        ev: &SessionEvent,
        device: Option<u64>,
        first_device: u64,
        strings: &mut Strings,
    ) {
        fn shared(slot: &mut Option<ArcStr>, v: Option<&str>, strings: &mut Strings) {
            match (slot.as_deref(), v) {
                (Some(cur), Some(v)) if cur == v => {}
                (_, Some(v)) => *slot = Some(strings.get(v)),
                (_, None) => *slot = None,
            }
        }
        self.ip = ev.ip;
        shared(&mut self.country, ev.geo.country.as_deref(), strings);
        shared(&mut self.city, ev.geo.city.as_deref(), strings);
        self.lat = ev.geo.lat.unwrap_or(f64::NAN);
        self.lon = ev.geo.lon.unwrap_or(f64::NAN);
        self.asn = ev.geo.asn.unwrap_or(NO_ASN);
        shared(&mut self.as_org, ev.geo.as_org.as_deref(), strings);
        shared(&mut self.user_agent, ev.user_agent.as_deref(), strings);
        let first = first_device != 0 && device == Some(first_device);
        match (self.device_id.as_deref(), ev.device_id.as_deref()) {
            (Some(_), Some(_)) if first && self.device_is_first => {}
            (Some(cur), Some(v)) if cur == v => {}
            (_, v) => self.device_id = v.map(Into::into),
        }
        self.device_is_first = first && self.device_id.is_some();
        self.time_ms = Some(ev.time_ms).into();
    }

    /// Autonomous system number, when known.
    pub fn asn(&self) -> Option<u32> {
        (self.asn != NO_ASN).then_some(self.asn)
    }

    /// The endpoint as alerts show it.
    pub fn to_endpoint(&self) -> Endpoint {
        Endpoint {
            ip: self.ip.map(|i| i.to_string()),
            country: self.country.as_deref().map(str::to_owned),
            city: self.city.as_deref().map(str::to_owned),
            lat: opt_f64(self.lat),
            lon: opt_f64(self.lon),
            asn: self.asn(),
            as_org: self.as_org.as_deref().map(str::to_owned),
            user_agent: self.user_agent.as_deref().map(str::to_owned),
            device_id: self.device_id.as_deref().map(str::to_owned),
            time_ms: self.time_ms.get(),
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
            lat: e.lat.unwrap_or(f64::NAN),
            lon: e.lon.unwrap_or(f64::NAN),
            asn: e.asn.unwrap_or(NO_ASN),
            as_org: e.as_org.map(Into::into),
            user_agent: e.user_agent.map(Into::into),
            device_id: e.device_id.map(Into::into),
            time_ms: e.time_ms.into(),
            device_is_first: false,
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
        st.serialize_field("lat", &opt_f64(self.lat))?;
        st.serialize_field("lon", &opt_f64(self.lon))?;
        st.serialize_field("asn", &self.asn())?;
        st.serialize_field("as_org", &self.as_org.as_deref())?;
        st.serialize_field("user_agent", &self.user_agent.as_deref())?;
        st.serialize_field("device_id", &self.device_id.as_deref())?;
        st.serialize_field("time_ms", &self.time_ms)?;
        st.end()
    }
}

impl<'de> serde::Deserialize<'de> for LastEndpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        EndpointWire::deserialize(d).map(|w| Self::from_wire(w, &mut |s| ArcStr::from(s)))
    }
}

/// An [`Endpoint`] as the changelog holds it (same fields, same order), its strings
/// borrowed from the record: what [`LastEndpoint`] is read from.
#[derive(serde::Deserialize)]
#[serde(rename = "Endpoint")]
struct EndpointWire<'a> {
    #[serde(borrow)]
    ip: Option<Text<'a>>,
    #[serde(borrow)]
    country: Option<Text<'a>>,
    #[serde(borrow)]
    city: Option<Text<'a>>,
    lat: Option<f64>,
    lon: Option<f64>,
    asn: Option<u32>,
    #[serde(borrow)]
    as_org: Option<Text<'a>>,
    #[serde(borrow)]
    user_agent: Option<Text<'a>>,
    #[serde(borrow)]
    device_id: Option<Text<'a>>,
    time_ms: Option<i64>,
}

impl LastEndpoint {
    /// The endpoint read from a record, its shared strings from `shared`.
    #[inline]
    fn from_wire(w: EndpointWire<'_>, shared: &mut impl FnMut(&str) -> ArcStr) -> Self {
        let mut share = |t: Option<Text<'_>>| t.map(|t| shared(&t.0));
        Self {
            // Written from an address, so it parses; anything else is not an address to show.
            ip: w.ip.and_then(|i| i.0.parse().ok()),
            country: share(w.country),
            city: share(w.city),
            lat: w.lat.unwrap_or(f64::NAN),
            lon: w.lon.unwrap_or(f64::NAN),
            asn: w.asn.unwrap_or(NO_ASN),
            as_org: share(w.as_org),
            user_agent: share(w.user_agent),
            device_id: w.device_id.map(|d| d.0.into()),
            time_ms: w.time_ms.into(),
            device_is_first: false,
        }
    }
}

/// A located sighting of the session.
///
/// Its coordinates are held as `f32` (about a metre at the equator, where GeoIP locates to
/// kilometres) with NaN for none, which makes a place 48 bytes instead of 64: a session keeps
/// two or more. It is written to the changelog as layout version 1 writes it, coordinates as
/// an optional pair of `f64` (see [`PlaceWire`]).
#[derive(Debug, Clone, Copy)]
pub struct Place {
    /// Latitude, degrees; NaN when only the network is known.
    lat: f32,
    /// Longitude, degrees; NaN when only the network is known.
    lon: f32,
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

impl PartialEq for Place {
    /// Field for field, places without coordinates alike (NaN is not equal to itself).
    fn eq(&self, o: &Self) -> bool {
        self.coords() == o.coords()
            && self.accuracy_km == o.accuracy_km
            && self.asn == o.asn
            && self.country == o.country
            && self.device == o.device
            && self.first_seen == o.first_seen
            && self.last_seen == o.last_seen
    }
}

/// A [`Place`] as the changelog holds it (field order and shapes of layout version 1).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename = "Place")]
struct PlaceWire {
    coords: Option<(f64, f64)>,
    accuracy_km: u32,
    asn: u32,
    country: u64,
    device: u64,
    first_seen: i64,
    last_seen: i64,
}

impl serde::Serialize for Place {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PlaceWire {
            coords: self.coords(),
            accuracy_km: self.accuracy_km,
            asn: self.asn,
            country: self.country,
            device: self.device,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Place {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = PlaceWire::deserialize(d)?;
        let mut p = Place::at(w.coords);
        p.accuracy_km = w.accuracy_km;
        p.asn = w.asn;
        p.country = w.country;
        p.device = w.device;
        p.first_seen = w.first_seen;
        p.last_seen = w.last_seen;
        Ok(p)
    }
}

impl Place {
    /// A place at `coords` (latitude, longitude in degrees; `None` when only the network is
    /// known), every other field zero. Coordinates that are not finite as `f32` are none.
    pub fn at(coords: Option<(f64, f64)>) -> Self {
        let (lat, lon) = coords
            .map(|(a, o)| (a as f32, o as f32))
            .filter(|(a, o)| a.is_finite() && o.is_finite())
            .unwrap_or((f32::NAN, f32::NAN));
        Self {
            lat,
            lon,
            accuracy_km: 0,
            asn: 0,
            country: 0,
            device: 0,
            first_seen: 0,
            last_seen: 0,
        }
    }

    /// Latitude and longitude, degrees, when known.
    pub fn coords(&self) -> Option<(f64, f64)> {
        (!self.lat.is_nan()).then_some((f64::from(self.lat), f64::from(self.lon)))
    }

    /// Whether two places are the same for concurrency purposes: within `same_km` when both
    /// have coordinates, else the same ASN.
    pub fn same_as(&self, other: &Place, same_km: f64) -> bool {
        match (self.coords(), other.coords()) {
            (Some(a), Some(b)) => crate::geo::distance_km(a, b) <= same_km,
            _ => self.asn != 0 && self.asn == other.asn,
        }
    }
}

/// Asks the CPU for the cache line holding `x`, without waiting for it (a hint: it changes
/// what is in the caches, never what the program computes).
#[inline(always)]
pub(crate) fn fetch<T>(x: &T) {
    mem_prefetch::prefetch_read_data::<T, 3>(x);
}

/// Asks for the first cache line of a key's text (a table's slot holds only its pointer).
#[inline(always)]
fn fetch_key(k: &str) {
    if let Some(b) = k.as_bytes().first() {
        fetch(b);
    }
}

/// A table value whose memory a read-ahead asks for (see [`BoundedTable::warm_text_key`]).
pub trait Warm {
    /// Asks for the cache lines an event's processing will read, without waiting for them.
    fn warm(&self);
}

impl<T: Warm> Warm for Box<T> {
    #[inline]
    fn warm(&self) {
        (**self).warm();
    }
}

/// What the engine remembers about one live session.
///
/// Laid out for a table of millions: what every event reads or writes sits in this one
/// allocation (short lists inline, see [`Small`]), and what few sessions have (an OAuth scope
/// baseline, findings, delegation) waits behind [`SessionState::rare`]. The changelog
/// writes it field for field as [`SessionWire`] lays it out, whatever the layout in memory;
/// two states are equal when they would be written alike.
#[derive(Debug, Clone)]
pub struct SessionState {
    /// User the session belongs to.
    pub user_id: Box<str>,
    /// Tenant (shared through [`Strings`]: a tenant's sessions hold its name once).
    pub tenant: Option<ArcStr>,
    /// The application the session was first seen with, for the inventory (shared as the
    /// tenant is).
    pub app: Option<ArcStr>,
    /// First event time, epoch ms.
    pub first_seen: i64,
    /// Latest event time, epoch ms.
    pub last_seen: i64,
    /// When the session ended (logout or IdP revocation), if it did.
    ended: OptTime,
    /// The first device fingerprint seen (hash), 0 before one is (see [`SessionState::device`]).
    first_device: u64,
    /// Events seen.
    pub events: u32,
    /// Whether Vigil already revoked the session.
    pub revoked: bool,
    /// Whether the session waits in the engine's list for the next changelog flush (in
    /// memory only: not part of the state written).
    pub(crate) dirty: bool,
    /// When the session's age or idle limit falls due as queued in the engine's lifetime
    /// queue, as a [`due_ticket`] (in seconds); [`NOT_QUEUED`] when it is not queued (in
    /// memory only).
    pub(crate) lifetime_due: u32,
    /// The kind of identity holding the session (see [`crate::governance`]).
    pub identity: Option<vigil_model::IdentityType>,
    /// The first user agent's family and OS.
    pub ua: Option<UaInfo>,
    /// Events per minute.
    pub rate: RateCounter,
    /// Hashes of the latest source record ids, oldest first, the first `recent_len` of them
    /// (see [`SessionState::recent_ids`]): a record delivered again (Kafka redelivers the
    /// uncommitted tail after a crash or rebalance) is recognised and skipped. An array and a
    /// count beside the other small fields rather than a list: eight bytes less per session.
    recent: [u64; RECENT_IDS],
    /// How many of `recent` are held.
    recent_len: u8,
    /// Distinct device fingerprints in the window.
    pub devices: DistinctWindow<4>,
    /// Distinct IPs in the window.
    pub ips: DistinctWindow<8>,
    /// Distinct user agents in the window.
    pub user_agents: DistinctWindow<4>,
    /// Distinct ASNs in the window.
    pub asn_window: DistinctWindow<4>,
    /// Countries seen in this session (hashes).
    pub countries: Small<[u64; 2]>,
    /// ASNs seen in this session.
    pub asns: Small<[u32; 4]>,
    /// Where the session was last seen with location or network known; [`NO_PLACE`] before
    /// (see [`SessionState::last_place`]: a place with a time of its own needs no flag).
    last_place: Place,
    /// The most recent distinct places (newest last), for concurrent-use detection.
    pub places: Small<[Place; 1]>,
    /// The endpoint of the previous event, shown as "before" in alerts.
    pub last_endpoint: LastEndpoint,
    /// What few sessions have; `None` while all of it is empty.
    rare: Option<Box<Rare>>,
}

/// [`SessionState::last_place`] before the session was seen anywhere.
const NO_PLACE: Place = Place {
    lat: f32::NAN,
    lon: f32::NAN,
    accuracy_km: 0,
    asn: 0,
    country: 0,
    device: 0,
    first_seen: NO_TIME,
    last_seen: NO_TIME,
};

/// [`SessionState::lifetime_due`] of a session not in the engine's lifetime queue.
pub(crate) const NOT_QUEUED: u32 = u32::MAX;

/// A lifetime queue entry's due time (event time, epoch ms) as its session holds it: whole
/// seconds, four bytes instead of eight. An entry the session has since replaced may share the
/// second of the one it holds and be taken for it; that costs a check of the session's limits
/// against its state, which is what decides, never a missed one.
pub(crate) fn due_ticket(at: i64) -> u32 {
    at.div_euclid(1000).clamp(0, i64::from(NOT_QUEUED) - 1) as u32
}

/// The parts of a session's state few sessions have, kept out of the common allocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rare {
    /// Scopes granted early in the session: its baseline.
    pub baseline_scopes: Vec<Box<str>>,
    /// Until when (epoch ms) newly granted scopes still join the baseline.
    pub baseline_until: Option<i64>,
    /// Recent findings' (time, confidence), for combining evidence.
    pub recent_findings: Vec<(i64, u8)>,
    /// The detector (index in `detectors::NAMES`) of each of `recent_findings`, in step
    /// with it; absent in state written before it existed (each finding then counts alone).
    pub recent_finding_detectors: Vec<u8>,
    /// The session that minted this one (delegation), when known.
    pub parent: Option<Box<str>>,
    /// Sessions this one minted, held here (bounded), revoked when it ends.
    pub children: Vec<Box<str>>,
}

static NO_RARE: Rare = Rare {
    baseline_scopes: Vec::new(),
    baseline_until: None,
    recent_findings: Vec::new(),
    recent_finding_detectors: Vec::new(),
    parent: None,
    children: Vec::new(),
};

impl Rare {
    fn is_empty(&self) -> bool {
        *self == NO_RARE
    }
}

impl SessionState {
    /// A new session first seen with `ev`, its shared strings from `strings`.
    pub fn new(ev: &SessionEvent, strings: &mut Strings) -> Self {
        let mut st = Self {
            user_id: ev.user_id.as_str().into(),
            tenant: ev.tenant.as_deref().map(|t| strings.get(t)),
            app: ev.app.as_deref().map(|a| strings.get(a)),
            first_seen: ev.time_ms,
            last_seen: ev.time_ms,
            ended: OptTime::NONE,
            first_device: 0,
            events: 0,
            revoked: false,
            dirty: false,
            lifetime_due: NOT_QUEUED,
            identity: ev.identity_type,
            ua: None,
            rate: RateCounter::default(),
            recent: [0; RECENT_IDS],
            recent_len: 0,
            devices: DistinctWindow::default(),
            ips: DistinctWindow::default(),
            user_agents: DistinctWindow::default(),
            asn_window: DistinctWindow::default(),
            countries: Small::new(),
            asns: Small::new(),
            last_place: NO_PLACE,
            places: Small::new(),
            last_endpoint: LastEndpoint::default(),
            rare: None,
        };
        if let Some(p) = ev.parent_session_id.as_deref() {
            st.rare_mut().parent = Some(p.into());
        }
        st
    }

    /// Shares this state's strings through `strings` (for state read from the changelog).
    pub fn intern(&mut self, strings: &mut Strings) {
        let e = &mut self.last_endpoint;
        for slot in [
            &mut self.tenant,
            &mut self.app,
            &mut e.country,
            &mut e.city,
            &mut e.as_org,
            &mut e.user_agent,
        ] {
            if let Some(v) = slot.as_mut() {
                *v = strings.get(v);
            }
        }
    }

    /// Where the session was last seen with location or network known, if it was.
    pub fn last_place(&self) -> Option<Place> {
        (self.last_place.first_seen != NO_TIME).then_some(self.last_place)
    }

    /// Records where the session was just seen (a place seen at an event's time).
    pub fn set_last_place(&mut self, p: Place) {
        self.last_place = p;
    }

    /// Hashes of the latest source record ids, oldest first.
    pub fn recent_ids(&self) -> &[u64] {
        &self.recent[..usize::from(self.recent_len)]
    }

    /// Remembers the hash of a source record id, forgetting the oldest of [`RECENT_IDS`].
    pub fn remember_id(&mut self, h: u64) {
        let n = usize::from(self.recent_len);
        if n < RECENT_IDS {
            self.recent[n] = h;
            self.recent_len += 1;
        } else {
            self.recent.copy_within(1.., 0);
            self.recent[RECENT_IDS - 1] = h;
        }
    }

    /// The first device fingerprint seen (hash), if one was.
    pub fn device(&self) -> Option<u64> {
        (self.first_device != 0).then_some(self.first_device)
    }

    /// Records the session's device fingerprint (hash) unless one was recorded before.
    pub fn saw_device(&mut self, d: u64) {
        if self.first_device == 0 {
            self.first_device = d;
        }
    }

    /// When the session ended (logout or IdP revocation), if it did.
    pub fn ended_at(&self) -> Option<i64> {
        self.ended.get()
    }

    /// Records that the session ended at `t`, unless it already had.
    pub fn end_at(&mut self, t: i64) {
        self.ended.get_or_insert(t);
    }

    /// The rarely present parts (empty for most sessions).
    pub fn rare(&self) -> &Rare {
        self.rare.as_deref().unwrap_or(&NO_RARE)
    }

    /// The rarely present parts, to change (allocated on first use).
    pub fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// The session that minted this one, when known.
    pub fn parent(&self) -> Option<&str> {
        self.rare().parent.as_deref()
    }

    /// Takes the sessions this one minted, leaving none.
    pub fn take_children(&mut self) -> Vec<Box<str>> {
        self.rare
            .as_mut()
            .map(|r| std::mem::take(&mut r.children))
            .unwrap_or_default()
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

/// A session's state as the changelog holds it: the field order and shapes of layout
/// version 1, which the in-memory [`SessionState`] is written as and read from (a `Small`
/// list is written as a list, the rare parts in their places among the rest).
#[derive(PartialEq, serde::Serialize)]
#[serde(rename = "SessionState")]
struct SessionWireRef<'a> {
    user_id: &'a str,
    tenant: Option<&'a str>,
    first_seen: i64,
    last_seen: i64,
    events: u32,
    last_place: Option<Place>,
    places: &'a [Place],
    countries: &'a [u64],
    asns: &'a [u32],
    device: Option<u64>,
    ua: Option<UaInfo>,
    devices: &'a DistinctWindow<4>,
    ips: &'a DistinctWindow<8>,
    user_agents: &'a DistinctWindow<4>,
    asn_window: &'a DistinctWindow<4>,
    rate: RateCounter,
    baseline_scopes: &'a [Box<str>],
    baseline_until: Option<i64>,
    ended_at: Option<i64>,
    revoked: bool,
    recent_findings: &'a [(i64, u8)],
    recent_finding_detectors: &'a [u8],
    last_endpoint: &'a LastEndpoint,
    recent_ids: &'a [u64],
    identity: Option<vigil_model::IdentityType>,
    parent: Option<&'a str>,
    children: &'a [Box<str>],
    app: Option<&'a str>,
}

/// [`SessionWireRef`]'s fields as read back, strings borrowed from the record where they can
/// be (see [`Text`]: a restore looks a shared string up in the engine's [`Strings`]
/// without copying it out first).
#[derive(serde::Deserialize)]
#[serde(rename = "SessionState")]
struct SessionWire<'a> {
    #[serde(borrow)]
    user_id: Text<'a>,
    #[serde(borrow)]
    tenant: Option<Text<'a>>,
    first_seen: i64,
    last_seen: i64,
    events: u32,
    last_place: Option<Place>,
    places: Small<[Place; 1]>,
    countries: Small<[u64; 2]>,
    asns: Small<[u32; 4]>,
    device: Option<u64>,
    ua: Option<UaInfo>,
    devices: DistinctWindow<4>,
    ips: DistinctWindow<8>,
    user_agents: DistinctWindow<4>,
    asn_window: DistinctWindow<4>,
    rate: RateCounter,
    baseline_scopes: Vec<Box<str>>,
    baseline_until: Option<i64>,
    ended_at: Option<i64>,
    revoked: bool,
    recent_findings: Vec<(i64, u8)>,
    // The `default` fields are absent in state written by earlier versions.
    #[serde(default)]
    recent_finding_detectors: Vec<u8>,
    #[serde(borrow)]
    last_endpoint: EndpointWire<'a>,
    #[serde(default)]
    recent_ids: Small<[u64; 8]>,
    #[serde(default)]
    identity: Option<vigil_model::IdentityType>,
    #[serde(default, borrow)]
    parent: Option<Text<'a>>,
    #[serde(default)]
    children: Vec<Box<str>>,
    #[serde(default, borrow)]
    app: Option<Text<'a>>,
}

impl SessionState {
    fn wire(&self) -> SessionWireRef<'_> {
        let r = self.rare();
        SessionWireRef {
            user_id: &self.user_id,
            tenant: self.tenant.as_deref(),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            events: self.events,
            last_place: self.last_place(),
            places: &self.places,
            countries: &self.countries,
            asns: &self.asns,
            device: self.device(),
            ua: self.ua,
            devices: &self.devices,
            ips: &self.ips,
            user_agents: &self.user_agents,
            asn_window: &self.asn_window,
            rate: self.rate,
            baseline_scopes: &r.baseline_scopes,
            baseline_until: r.baseline_until,
            ended_at: self.ended_at(),
            revoked: self.revoked,
            recent_findings: &r.recent_findings,
            recent_finding_detectors: &r.recent_finding_detectors,
            last_endpoint: &self.last_endpoint,
            recent_ids: self.recent_ids(),
            identity: self.identity,
            parent: r.parent.as_deref(),
            children: &r.children,
            app: self.app.as_deref(),
        }
    }
}

impl PartialEq for SessionState {
    fn eq(&self, other: &Self) -> bool {
        self.wire() == other.wire()
    }
}

impl serde::Serialize for SessionState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.wire().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for SessionState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SessionWire::deserialize(d).map(|w| Self::from_wire(w, &mut |s| ArcStr::from(s)))
    }
}

impl SessionState {
    /// A state read from a changelog record's body (`binary` or JSON), its shared strings
    /// (tenant, application, the last endpoint's place, network and user agent) from
    /// `shared`: at a restore, the engine's [`Strings`], so none is copied out first.
    #[inline]
    pub(crate) fn decode(
        body: &[u8],
        binary: bool,
        shared: &mut impl FnMut(&str) -> ArcStr,
    ) -> Result<Self, String> {
        let w: SessionWire<'_> = if binary {
            match postcard::take_from_bytes(body) {
                Ok((w, [])) => w,
                Ok((_, rest)) => return Err(format!("{} bytes left over", rest.len())),
                Err(e) => return Err(e.to_string()),
            }
        } else {
            serde_json::from_slice(body).map_err(|e| e.to_string())?
        };
        Ok(Self::from_wire(w, shared))
    }

    #[inline]
    fn from_wire(w: SessionWire<'_>, shared: &mut impl FnMut(&str) -> ArcStr) -> Self {
        let rare = Rare {
            baseline_scopes: w.baseline_scopes,
            baseline_until: w.baseline_until,
            recent_findings: w.recent_findings,
            recent_finding_detectors: w.recent_finding_detectors,
            parent: w.parent.map(|p| p.0.into()),
            children: w.children,
        };
        let mut st = Self {
            user_id: w.user_id.0.into(),
            tenant: w.tenant.map(|t| shared(&t.0)),
            app: w.app.map(|a| shared(&a.0)),
            first_seen: w.first_seen,
            last_seen: w.last_seen,
            ended: w.ended_at.into(),
            first_device: w.device.unwrap_or(0),
            events: w.events,
            revoked: w.revoked,
            dirty: false,
            lifetime_due: NOT_QUEUED,
            identity: w.identity,
            ua: w.ua,
            rate: w.rate,
            recent: [0; RECENT_IDS],
            recent_len: 0,
            devices: w.devices,
            ips: w.ips,
            user_agents: w.user_agents,
            asn_window: w.asn_window,
            countries: w.countries,
            asns: w.asns,
            last_place: w.last_place.unwrap_or(NO_PLACE),
            places: w.places,
            last_endpoint: LastEndpoint::from_wire(w.last_endpoint, shared),
            rare: (!rare.is_empty()).then(|| Box::new(rare)),
        };
        // Written oldest first; a longer list than this version keeps gives its newest.
        let skip = w.recent_ids.len().saturating_sub(RECENT_IDS);
        for &h in &w.recent_ids[skip..] {
            st.remember_id(h);
        }
        st
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
/// Owned by one partition task: no locks. Expired entries go in expiry passes driven by event
/// time, which [`BoundedTable::sweep_some`] takes a few entries at a time: a pass resumes
/// where the previous call stopped (a bucket index of the hash table), so a table of ten
/// million entries is never swept in one pause. At the cap, room is made for many inserts at
/// once from among the least recently seen entries, judged from a sample of the table
/// ([`BoundedTable::evict_oldest`]), so making room never looks at the whole table either.
pub struct BoundedTable<K, V> {
    map: HashTable<(K, V)>,
    idle_ttl_ms: i64,
    absolute_ttl_ms: i64,
    cap: usize,
    /// Evictions so far.
    pub evictions: EvictionCounts,
    /// Keys evicted since the last [`BoundedTable::take_evicted`], when tracking.
    evicted: Option<Vec<K>>,
    /// Where the next sample for making room at the cap starts ([`BoundedTable::evict_oldest`]).
    evict_cursor: usize,
    /// The bucket the expiry pass under way looks at next; 0 when none is under way. A table
    /// that grows during a pass rehashes its entries to other buckets: the pass then skips
    /// some and looks at others twice, and the next pass looks at every one again.
    cursor: usize,
}

impl<K: std::fmt::Debug, V> std::fmt::Debug for BoundedTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedTable")
            .field("len", &self.map.len())
            .field("cap", &self.cap)
            .field("evictions", &self.evictions)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

/// The table's hash of a key (or of what it borrows as: `Box<str>` and `str` hash alike).
fn hash_of<Q: Hash + ?Sized>(key: &Q) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// Empty buckets an expiry step passes over for the cost of looking at one entry: skipping
/// one reads a byte, so a table emptied by a wave of expiry is crossed quickly, but not
/// without bound in one call.
const EMPTY_BUCKETS_PER_ENTRY: usize = 8;

/// Entries looked at to choose which to evict at the cap (see [`BoundedTable::evict_oldest`]).
const EVICTION_SAMPLE: usize = 4096;

/// Entries a scan finds before it looks at them (see [`BoundedTable::scan_some`]).
const SCAN_RUN: usize = 32;

/// What a [`BoundedTable`] needs to know about its values.
pub trait Aged {
    /// First time seen, epoch ms.
    fn first_seen(&self) -> i64;
    /// Last time seen, epoch ms.
    fn last_seen(&self) -> i64;
}

impl Warm for SessionState {
    /// Asks for every cache line of the state an event's processing reads (the state spans
    /// eight). The last device id's text, which lives apart, is not asked for (reaching it
    /// would mean waiting for the pointer): an event reads it only when its device is not
    /// known by its hash to be the one held (see [`LastEndpoint::assign`]).
    #[inline]
    fn warm(&self) {
        let e = &self.last_endpoint;
        fetch(&self.user_id);
        fetch(&self.tenant);
        fetch(&self.first_seen);
        fetch(&self.last_seen);
        fetch(&self.ended);
        fetch(&self.first_device);
        fetch(&self.events);
        fetch(&self.ua);
        fetch(&self.rate);
        fetch(&self.recent);
        fetch(&self.devices);
        fetch(&self.ips);
        fetch(&self.user_agents);
        fetch(&self.asn_window);
        fetch(&self.countries);
        fetch(&self.asns);
        fetch(&self.last_place);
        fetch(&self.places);
        fetch(&e.ip);
        fetch(&e.country);
        fetch(&e.lat);
        fetch(&e.asn);
        fetch(&e.user_agent);
        fetch(&e.device_id);
        fetch(&e.time_ms);
        fetch(&self.rare);
    }
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
            map: HashTable::new(),
            idle_ttl_ms,
            absolute_ttl_ms,
            cap: cap.max(1),
            evictions: EvictionCounts::default(),
            evicted: None,
            evict_cursor: 0,
            cursor: 0,
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
        let entry = self
            .map
            .find_entry(hash_of(key), |(k, _)| k.borrow() == key)
            .ok()?;
        Some(entry.remove().0.1)
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
        self.map
            .find(hash_of(key), |(k, _)| k.borrow() == key)
            .map(|(_, v)| v)
    }

    /// Hands `touch` the entry `key` most likely names, without comparing keys: the first
    /// whose hash tag matches; whether there was one. For [`crate::Engine::prefetch`]: the
    /// key's memory and the value's are asked for side by side, where a lookup reads the
    /// value only after the key compared equal. A wrong guess (another key with the same
    /// seven-bit tag in the probed group) only warms the wrong entry.
    pub fn warm<Q: Hash + ?Sized>(&self, key: &Q, touch: impl FnOnce(&K, &V)) -> bool
    where
        K: Borrow<Q>,
    {
        self.map
            .find(hash_of(key), |_| true)
            .map(|(k, v)| touch(k, v))
            .is_some()
    }

    /// The entry for `key`, mutable.
    pub fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.map
            .find_mut(hash_of(key), |(k, _)| k.borrow() == key)
            .map(|(_, v)| v)
    }

    /// The entry for `key`, inserted from `make` first (as [`BoundedTable::insert`] inserts)
    /// when there is none, and whether it was: one probe of the table when the entry is
    /// there, where a lookup, an insert and another lookup took two. (`None` would mean the
    /// bucket the probe found was empty a moment later, which cannot happen.)
    pub fn get_or_insert_with<Q: Hash + Eq + ?Sized>(
        &mut self,
        key: &Q,
        make: impl FnOnce() -> (K, V),
    ) -> Option<(&mut V, bool)>
    where
        K: Borrow<Q>,
    {
        match self
            .map
            .find_bucket_index(hash_of(key), |(k, _)| k.borrow() == key)
        {
            Some(i) => self.map.get_bucket_mut(i).map(|(_, v)| (v, false)),
            None => {
                let (k, v) = make();
                Some((self.insert(k, v), true))
            }
        }
    }

    /// Inserts a new entry, making room first if the table is full; an entry already there
    /// is kept as it is.
    pub fn insert(&mut self, key: K, value: V) -> &mut V {
        let hash = hash_of(&key);
        if self.map.len() >= self.cap && self.map.find(hash, |(k, _)| *k == key).is_none() {
            self.evict_oldest();
        }
        let entry = self
            .map
            .entry(hash, |(k, _)| *k == key, |(k, _)| hash_of(k));
        match entry {
            hashbrown::hash_table::Entry::Occupied(e) => &mut e.into_mut().1,
            hashbrown::hash_table::Entry::Vacant(e) => &mut e.insert((key, value)).into_mut().1,
        }
    }

    /// Inserts or replaces an entry, making room first if the table is full.
    pub fn put(&mut self, key: K, value: V) {
        if let Some(slot) = self.get_mut(&key) {
            *slot = value;
        } else {
            self.insert(key, value);
        }
    }

    /// Iterates over all entries.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, v)| (k, v))
    }

    /// The hash this table files `key` under.
    pub fn key_hash<Q: Hash + ?Sized>(key: &Q) -> u64
    where
        K: Borrow<Q>,
    {
        hash_of(key)
    }

    /// The entries filed under `hash` ([`BoundedTable::key_hash`] of their keys): usually
    /// one, or none once it left.
    pub fn with_hash(&self, hash: u64) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter_hash(hash).map(|(k, v)| (k, v))
    }

    /// Iterates over all entries, values mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.map.iter_mut().map(|(k, v)| (&*k, v))
    }

    /// Why the entry goes at `now`, if it does.
    fn expired(&self, v: &V, now: i64) -> Option<Eviction> {
        if now - v.first_seen() > self.absolute_ttl_ms {
            Some(Eviction::Absolute)
        } else if now - v.last_seen() > self.idle_ttl_ms {
            Some(Eviction::Idle)
        } else {
            None
        }
    }

    /// Removes the entry in bucket `i` (a scan's index: removing an entry leaves every other
    /// in its bucket, so a scan's indexes stay good) and counts it as evicted for `why`.
    fn evict_at(&mut self, i: usize, why: Eviction) {
        let Ok(e) = self.map.get_bucket_entry(i) else {
            return;
        };
        let ((key, _), _) = e.remove();
        match why {
            Eviction::Absolute => self.evictions.absolute += 1,
            Eviction::Idle => self.evictions.idle += 1,
            Eviction::Capacity => self.evictions.capacity += 1,
        }
        if let Some(e) = self.evicted.as_mut() {
            e.push(key);
        }
    }

    /// Goes on with the expiry pass under way (or starts one): looks at up to `budget`
    /// entries, removing those idle or older than their TTLs at `now`, where passing over
    /// [`EMPTY_BUCKETS_PER_ENTRY`] empty buckets counts as looking at one entry. Returns the
    /// budget spent (at least 1) and whether the pass reached the end of the table (the next
    /// call then starts a new one).
    pub fn sweep_some(&mut self, now: i64, budget: usize) -> (usize, bool) {
        let mut cursor = self.cursor;
        let mut gone: Small<[(usize, Eviction); 16]> = Small::new();
        let (spent, done) = self.scan_some(&mut cursor, budget, |i, _, v| {
            if let Some(why) = self.expired(v, now) {
                gone.push((i, why));
            }
        });
        self.cursor = cursor;
        for (i, why) in gone {
            self.evict_at(i, why);
        }
        (spent, done)
    }

    /// Calls `f` with the bucket index, key and value of the entries from bucket `*cursor`
    /// on, up to `budget` of them (passing over [`EMPTY_BUCKETS_PER_ENTRY`] empty buckets
    /// counts as one), and moves `*cursor` past them. Returns the budget spent (at least 1)
    /// and whether the scan reached the end of the table; `*cursor` is then 0 again. A table
    /// that grows between calls rehashes its entries to other buckets, so a scan in calls may
    /// meet an entry twice or not at all.
    pub fn scan_some(
        &self,
        cursor: &mut usize,
        budget: usize,
        mut f: impl FnMut(usize, &K, &V),
    ) -> (usize, bool) {
        let buckets = self.map.num_buckets();
        let (mut looked, mut empty) = (0usize, 0usize);
        let spent = |looked: usize, empty: usize| {
            looked.saturating_add(empty.div_ceil(EMPTY_BUCKETS_PER_ENTRY))
        };
        // Each bucket adds at most one to what is spent, so it never exceeds the budget.
        // Entries are found first and handed to `f` in runs: reading what each one's value
        // points to then overlaps with the reads for the others in the run.
        let mut run: Small<[(usize, &(K, V)); SCAN_RUN]> = Small::new();
        while *cursor < buckets && spent(looked, empty) < budget {
            match self.map.get_bucket(*cursor) {
                Some(e) => {
                    looked += 1;
                    run.push((*cursor, e));
                    if run.len() == SCAN_RUN {
                        for &(i, (k, v)) in &run {
                            f(i, k, v);
                        }
                        run.clear();
                    }
                }
                None => empty += 1,
            }
            *cursor += 1;
        }
        for &(i, (k, v)) in &run {
            f(i, k, v);
        }
        let done = *cursor >= buckets;
        if done {
            *cursor = 0;
        }
        (spent(looked, empty).max(1), done)
    }

    /// Removes every entry idle or older than its TTL at `now` in one pass; returns how many
    /// went.
    pub fn sweep(&mut self, now: i64) -> usize {
        let before = self.map.len();
        self.cursor = 0;
        while !self.sweep_some(now, usize::MAX).1 {}
        before - self.map.len()
    }

    /// Makes room at the cap: the least recently seen hundredth of a table of up to
    /// [`EVICTION_SAMPLE`] entries goes; in a larger one, the least recently seen fiftieth of
    /// a sample of that many entries taken in table order from where the last one ended, so
    /// making room never looks at a whole table of millions. Hash order is unrelated to age,
    /// so the sample's oldest are among the table's oldest few hundredths.
    fn evict_oldest(&mut self) {
        let len = self.map.len();
        let sample = EVICTION_SAMPLE.min(len);
        // A hundredth of the cap from the whole table; from a sample, its oldest fiftieth
        // (looking at fewer entries per entry evicted: the sample costs more per entry than
        // one pass over the table did).
        let n = if sample == len {
            (self.cap / 100).max(1)
        } else {
            sample / 50
        };
        let mut seen: Vec<(i64, usize)> = Vec::with_capacity(sample);
        let mut cursor = self.evict_cursor;
        while seen.len() < sample {
            let want = sample - seen.len();
            self.scan_some(&mut cursor, want, |i, _, v| {
                if seen.len() < sample {
                    seen.push((v.last_seen(), i));
                }
            });
        }
        self.evict_cursor = cursor;
        if n < seen.len() {
            seen.select_nth_unstable(n - 1);
            seen.truncate(n);
        }
        for (_, i) in seen {
            self.evict_at(i, Eviction::Capacity);
        }
    }
}

impl<V: Aged + Warm> BoundedTable<Box<str>, V> {
    /// [`BoundedTable::warm`] for a table keyed by text: asks for the key's text and the
    /// value's lines; whether the entry was there.
    #[inline]
    pub fn warm_text_key(&self, key: &str) -> bool {
        self.warm(key, |k, v| {
            fetch_key(k);
            v.warm();
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(line: &str) -> SessionEvent {
        use vigil_model::adapters::{AdapterContext, InputFormat, parse_record};
        parse_record(
            line.as_bytes(),
            InputFormat::Native,
            &AdapterContext::new(b"k"),
        )
        .expect("valid")
    }

    /// What few sessions have is allocated only for them, and a state reads back equal to
    /// what was written whether its rare parts were never used or used and emptied again.
    #[test]
    fn rare_parts_are_held_apart_and_round_trip() {
        let plain = event(
            r#"{"id":"1","time":1714550400000,"kind":"access","session_id":"s","user_id":"u"}"#,
        );
        let mut strings = Strings::default();
        let mut st = SessionState::new(&plain, &mut strings);
        assert!(st.rare.is_none(), "a plain session holds no rare parts");
        assert_eq!(st.parent(), None);
        let child = event(
            r#"{"id":"2","time":1714550400000,"kind":"access","session_id":"c","user_id":"u","parent_session_id":"s"}"#,
        );
        assert_eq!(SessionState::new(&child, &mut strings).parent(), Some("s"));

        let round_trip = |st: &SessionState| -> SessionState {
            let bytes = postcard::to_allocvec(st).expect("encodes");
            let back: SessionState = postcard::from_bytes(&bytes).expect("decodes");
            let json: SessionState =
                serde_json::from_str(&serde_json::to_string(st).expect("encodes"))
                    .expect("decodes");
            assert_eq!(back, json, "both encodings read back alike");
            back
        };
        st.rare_mut().recent_findings.push((1, 70));
        st.rare_mut().recent_finding_detectors.push(2);
        st.rare_mut().children.push("c".into());
        let back = round_trip(&st);
        assert_eq!(back, st);
        assert_eq!(back.rare().children, vec![Box::<str>::from("c")]);
        assert_eq!(back.rare().recent_findings, vec![(1, 70)]);

        // Emptied again: equal to (and read back as) a state that never had any.
        st.rare_mut().recent_findings.clear();
        st.rare_mut().recent_finding_detectors.clear();
        assert_eq!(st.take_children().len(), 1);
        let back = round_trip(&st);
        assert!(back.rare.is_none());
        assert_eq!(back, st);
        assert_eq!(back, SessionState::new(&plain, &mut strings));
    }

    /// The short lists a session keeps stay inside it until they outgrow their inline room,
    /// and are written as plain lists either way.
    #[test]
    fn short_lists_are_inline_and_written_as_lists() {
        let mut ids: Small<[u64; 8]> = Small::new();
        for i in 0..8 {
            push_capped(&mut ids, i, 8);
        }
        assert!(!ids.spilled(), "eight record ids fit inside the session");
        push_capped(&mut ids, 8, 16);
        assert!(ids.spilled());
        let v: Vec<u64> = (0..9).collect();
        assert_eq!(
            postcard::to_allocvec(&ids).expect("encodes"),
            postcard::to_allocvec(&v).expect("encodes")
        );
        assert_eq!(
            serde_json::to_string(&ids).expect("encodes"),
            serde_json::to_string(&v).expect("encodes")
        );
    }

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

    /// An expiry pass taken a few entries at a time removes what one whole sweep removes,
    /// and no step looks at more than its budget.
    #[test]
    fn an_expiry_pass_in_steps_removes_what_one_sweep_removes() {
        let build = || {
            let mut t = BoundedTable::new(100, 1000, 10_000);
            t.track_evictions();
            for i in 0..5000u32 {
                let first = if i % 7 == 0 { 0 } else { 1100 };
                let last = if i % 3 == 0 { 500 } else { 1150 };
                t.insert(i, T(first, last));
            }
            t
        };
        let mut whole = build();
        let gone = whole.sweep(1200);
        assert!(gone > 1000, "both TTLs expire entries here: {gone}");
        let mut steps = build();
        let mut calls = 0;
        loop {
            let before = steps.len();
            let (spent, done) = steps.sweep_some(1200, 16);
            calls += 1;
            assert!((1..=16).contains(&spent), "spent {spent}");
            assert!(before - steps.len() <= 16);
            if done {
                break;
            }
        }
        assert!(calls >= 5000 / 16, "the pass took {calls} steps");
        assert_eq!(steps.len(), whole.len());
        assert_eq!(steps.evictions, whole.evictions);
        let (mut a, mut b) = (whole.take_evicted(), steps.take_evicted());
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
        // The next call starts a new pass, which finds nothing more to remove.
        while !steps.sweep_some(1200, 16).1 {}
        assert_eq!(steps.len(), whole.len());
    }

    /// A table emptied by expiry keeps its buckets; crossing them costs budget too, so one
    /// step never walks a whole empty table.
    #[test]
    fn empty_buckets_count_against_an_expiry_step() {
        let mut t = BoundedTable::new(100, 1000, 100_000);
        for i in 0..50_000u32 {
            t.insert(i, T(0, 0));
        }
        assert_eq!(t.sweep(1000), 50_000);
        let (spent, done) = t.sweep_some(1000, 4);
        assert!(
            !done,
            "4 entries' budget crosses at most 32 of the empty buckets"
        );
        assert_eq!(spent, 4);
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

    /// A session's state fits mimalloc's 512-byte size class (its classes step by a quarter
    /// of a power of two: 513 bytes would take a 640-byte block, 25% more memory per session
    /// for one field more). What no event needs waits behind `rare`; see `docs/PERFORMANCE.md`
    /// before growing this.
    #[test]
    fn session_state_fits_a_512_byte_block() {
        let size = std::mem::size_of::<SessionState>();
        assert!(size <= 512, "SessionState is {size} bytes");
        assert_eq!(std::mem::size_of::<LastEndpoint>(), 96);
    }

    /// A session remembers the newest [`RECENT_IDS`] record ids, oldest first, and reads back
    /// the newest of a longer list.
    #[test]
    fn recent_record_ids_keep_the_newest_in_order() {
        let ev = event(
            r#"{"id":"1","time":1714550400000,"kind":"access","session_id":"s","user_id":"u"}"#,
        );
        let mut st = SessionState::new(&ev, &mut Strings::default());
        for h in 1..=3 {
            st.remember_id(h);
        }
        assert_eq!(st.recent_ids(), &[1, 2, 3]);
        for h in 4..=11 {
            st.remember_id(h);
        }
        assert_eq!(st.recent_ids(), &[4, 5, 6, 7, 8, 9, 10, 11]);
        let back: SessionState =
            postcard::from_bytes(&postcard::to_allocvec(&st).expect("writes")).expect("reads");
        assert_eq!(back.recent_ids(), st.recent_ids());
        // A list longer than this version keeps (written by another) gives its newest.
        let mut json = serde_json::to_value(&st).expect("writes");
        json["recent_ids"] = serde_json::json!((1..=12).collect::<Vec<u64>>());
        let read: SessionState = serde_json::from_value(json).expect("reads");
        assert_eq!(read.recent_ids(), &[5, 6, 7, 8, 9, 10, 11, 12]);
    }

    /// An `OptTime` is written byte for byte as the `Option<i64>` it stands for, and read back.
    #[test]
    fn opt_time_is_written_as_an_option() {
        for t in [None, Some(0), Some(1_714_550_400_000), Some(-5)] {
            let o = OptTime::from(t);
            assert_eq!(o.get(), t);
            let bytes = postcard::to_allocvec(&o).expect("writes");
            assert_eq!(bytes, postcard::to_allocvec(&t).expect("writes"));
            assert_eq!(postcard::from_bytes::<OptTime>(&bytes).expect("reads"), o);
            let json = serde_json::to_string(&o).expect("writes");
            assert_eq!(json, serde_json::to_string(&t).expect("writes"));
            assert_eq!(serde_json::from_str::<OptTime>(&json).expect("reads"), o);
        }
        let mut o = OptTime::NONE;
        assert_eq!((o.get_or_insert(7), o.get_or_insert(9)), (7, 7));
        assert_eq!(std::mem::size_of::<OptTime>(), 8);
    }

    /// A place holds its coordinates to `f32`'s precision and writes them as layout version 1
    /// does (an optional pair of `f64`); coordinates `f32` cannot hold are none.
    #[test]
    fn places_hold_coordinates_to_a_metre_and_write_them_as_before() {
        assert_eq!(std::mem::size_of::<Place>(), 48);
        let p = Place::at(Some((40.7128, -74.006)));
        let (lat, lon) = p.coords().expect("located");
        assert!((lat - 40.7128).abs() < 1e-5 && (lon + 74.006).abs() < 1e-5);
        // What version 1 wrote for the same place reads back as this place.
        let v1 = serde_json::json!({"coords": [40.7128, -74.006], "accuracy_km": 20, "asn": 7,
            "country": 3, "device": 0, "first_seen": 1, "last_seen": 2});
        let read: Place = serde_json::from_value(v1).expect("reads");
        assert_eq!(read.coords(), p.coords());
        assert_eq!((read.accuracy_km, read.asn, read.last_seen), (20, 7, 2));
        let back: Place =
            postcard::from_bytes(&postcard::to_allocvec(&read).expect("writes")).expect("reads");
        assert_eq!(back, read);
        assert_eq!(Place::at(None).coords(), None);
        assert_eq!(
            Place::at(None),
            Place::at(None),
            "places without coordinates are alike"
        );
        assert_eq!(Place::at(Some((1e300, 0.0))).coords(), None);
    }

    #[test]
    fn shared_strings_are_held_once_and_purged_when_unused() {
        let mut strings = Strings::default();
        let a = strings.get("Mozilla/5.0");
        let b = strings.get("Mozilla/5.0");
        assert!(ArcStr::ptr_eq(&a, &b));
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
        // The first device of the samples taken as one session's, as `saw_device` keeps it.
        let mut first_device = 0;
        for line in text.lines() {
            let ev = parse_record(line.as_bytes(), InputFormat::Native, &ctx).expect("valid");
            let device = ev.device_id.as_deref().map(hash_str);
            if first_device == 0 {
                first_device = device.unwrap_or(0);
            }
            ep.assign(&ev, device, first_device, &mut strings);
            assert_eq!(ep.to_endpoint(), Endpoint::of(&ev), "{line}");
            n += 1;
        }
        assert!(n > 50, "{n} samples");
    }

    /// The device text is read only when the event's device is not known, by its hash, to be
    /// the one held: first device, another, first again, none, first again each show the
    /// event's own device; and an event whose device hashes as the held first device's is
    /// taken for it (as the detectors take devices), its text left unread.
    #[test]
    fn the_last_endpoint_keeps_the_first_device_by_its_hash() {
        let mut strings = Strings::default();
        let mut ep = LastEndpoint::default();
        let first = hash_str("dev-a");
        let at = |device: Option<&str>, t: i64| {
            let mut ev = SessionEvent::empty(vigil_model::SourceFormat::Native);
            ev.device_id = device.map(str::to_owned);
            ev.time_ms = t;
            ev
        };
        for (t, device) in [
            Some("dev-a"),
            Some("dev-a"),
            Some("dev-b"),
            Some("dev-a"),
            None,
            Some("dev-a"),
            Some("dev-a"),
        ]
        .into_iter()
        .enumerate()
        {
            let ev = at(device, t as i64);
            ep.assign(&ev, device.map(hash_str), first, &mut strings);
            assert_eq!(ep.device_id.as_deref(), device, "event {t}");
        }
        // Held as the first device's: a device given the first device's hash is not read.
        let ev = at(Some("dev-z"), 9);
        ep.assign(&ev, Some(first), first, &mut strings);
        assert_eq!(ep.device_id.as_deref(), Some("dev-a"));
        // Read back from the changelog, the text is compared once before it is trusted.
        let mut back: LastEndpoint =
            postcard::from_bytes(&postcard::to_allocvec(&ep).expect("writes")).expect("reads");
        back.assign(&ev, Some(first), first, &mut strings);
        assert_eq!(back.device_id.as_deref(), Some("dev-z"));
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

    /// At the cap of a table larger than one sample, what goes is among the least recently
    /// seen: here, 1,000 new entries into a full table of 100,000 last seen at 0..100,000
    /// push out entries from its oldest tenth only.
    #[test]
    fn a_full_large_table_evicts_from_its_oldest() {
        let mut t = BoundedTable::new(i64::MAX, i64::MAX, 100_000);
        t.track_evictions();
        for i in 0..100_000i64 {
            t.insert(i, T(0, i));
        }
        for i in 100_000..101_000i64 {
            t.insert(i, T(0, i));
        }
        // Room is made a sample's fiftieth at a time, so the table may end a little short.
        assert!((99_900..=100_000).contains(&t.len()), "{} held", t.len());
        let gone = t.take_evicted();
        assert_eq!(gone.len(), 101_000 - t.len());
        assert_eq!(t.evictions.capacity, gone.len() as u64);
        let newest = gone.iter().max().copied().unwrap_or(i64::MAX);
        assert!(newest < 10_000, "an entry last seen at {newest} went");
    }

    /// `warm` finds a present key's entry without comparing keys (no other key shares its
    /// tag here), and reads nothing in an empty table.
    #[test]
    fn warm_reads_the_entry_a_key_names() {
        let mut t = BoundedTable::new(i64::MAX, i64::MAX, 1_000);
        assert!(!t.warm(&7i64, |_, _: &T| panic!("an empty table has no entry")));
        for i in 0..1_000i64 {
            t.insert(i, T(0, i + 1));
        }
        for i in [0i64, 7, 999] {
            let mut seen = None;
            assert!(t.warm(&i, |k, v| seen = Some((*k, v.1))));
            assert_eq!(seen, Some((i, i + 1)));
        }
    }

    /// `get_or_insert_with` inserts what is missing (making room at the cap as `insert`
    /// does) and hands back what is there without calling `make`.
    #[test]
    fn get_or_insert_with_inserts_only_what_is_missing() {
        let mut t = BoundedTable::new(i64::MAX, i64::MAX, 2);
        let (v, inserted) = t.get_or_insert_with("a", || ("a", T(0, 5))).expect("held");
        assert!(inserted);
        v.1 = 6;
        let (v, inserted) = t
            .get_or_insert_with("a", || unreachable!("present"))
            .expect("held");
        assert!(!inserted);
        assert_eq!(v.1, 6);
        t.get_or_insert_with("b", || ("b", T(0, 9)));
        let (_, inserted) = t.get_or_insert_with("c", || ("c", T(0, 10))).expect("held");
        assert!(inserted);
        assert_eq!(t.len(), 2);
        assert!(t.get("a").is_none(), "the least recently seen made room");
        assert_eq!(t.evictions.capacity, 1);
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
