//! The detectors: one file each, each a pure function of the session's state before the event
//! and the event itself.
//!
//! A detector never mutates state (the engine updates it after every detector has looked), so
//! their order does not matter and each can be read and tested alone.

pub mod concurrent_use;
pub mod device_swap;
pub mod impossible_travel;
pub mod new_country_asn;
pub mod refresh_reuse;
pub mod scope_expansion;
pub mod token_replay;
pub mod unfamiliar_place;

use rustc_hash::FxHashSet;
use serde::Deserialize;
use vigil_model::{Endpoint, Finding, SessionEvent, Severity, TokenHash};

use crate::config::{ConfigError, NetworkConfig};
use crate::state::{BoundedTable, Place, SessionState};
use crate::tokens::{RefreshState, TokenBinding};
use crate::ua::UaInfo;

/// What the engine derived from an event once, for every detector to share.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    /// Client family and OS.
    pub ua: Option<UaInfo>,
    /// Hash of the device fingerprint.
    pub device: Option<u64>,
    /// Hash of the client IP.
    pub ip: Option<u64>,
    /// Hash of the user-agent string.
    pub ua_hash: Option<u64>,
    /// Where the event came from, when location or network is known.
    pub place: Option<Place>,
}

/// Relay and hosting ASN sets, and distance settings.
#[derive(Debug, Clone)]
pub struct Network {
    relay: FxHashSet<u32>,
    hosting: FxHashSet<u32>,
    /// Default accuracy, km.
    pub default_accuracy_km: u32,
    /// Same-place radius, km.
    pub same_place_km: f64,
}

impl Network {
    /// Validates the network settings.
    pub fn new(c: &NetworkConfig) -> Result<Self, ConfigError> {
        crate::config::check_range(
            "network.default_accuracy_km",
            c.default_accuracy_km,
            0,
            1000,
            "between 0 and 1000",
        )?;
        crate::config::check_range(
            "network.same_place_km",
            c.same_place_km,
            0.0,
            500.0,
            "between 0 and 500",
        )?;
        Ok(Self {
            relay: c.relay_asns.iter().copied().collect(),
            hosting: c.hosting_asns.iter().copied().collect(),
            default_accuracy_km: c.default_accuracy_km,
            same_place_km: c.same_place_km,
        })
    }

    /// Whether the ASN is a configured VPN or relay.
    pub fn is_relay(&self, asn: u32) -> bool {
        asn != 0 && self.relay.contains(&asn)
    }

    /// Whether the ASN is a configured hosting provider.
    pub fn is_hosting(&self, asn: u32) -> bool {
        asn != 0 && self.hosting.contains(&asn)
    }
}

/// Everything a detector may read.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// The event.
    pub ev: &'a SessionEvent,
    /// What the engine derived from it.
    pub obs: &'a Observation,
    /// The session's state before this event; `None` for its first event.
    pub session: Option<&'a SessionState>,
    /// Token bindings by token hash.
    pub tokens: &'a BoundedTable<TokenHash, TokenBinding>,
    /// Refresh-token lives by token hash.
    pub refresh: &'a BoundedTable<TokenHash, RefreshState>,
    /// Network classification.
    pub net: &'a Network,
    /// The user's baseline across sessions, when the user has been seen.
    pub user: Option<&'a crate::users::UserBaseline>,
}

impl Ctx<'_> {
    /// A finding with the session's previous endpoint as "before" and this event as "after".
    pub fn finding(
        &self,
        detector: &'static str,
        confidence: u8,
        title: String,
        detail: String,
        anomalies: Vec<vigil_model::Anomaly>,
    ) -> Finding {
        let confidence = confidence.min(100);
        Finding {
            detector,
            confidence,
            severity: Severity::from_confidence(confidence),
            title,
            detail,
            before: self.session.map(|s| s.last_endpoint.to_endpoint()),
            after: Some(Endpoint::of(self.ev)),
            anomalies,
        }
    }

    /// Whether the device and client are the same as the session's baseline:
    /// `Some(true)` when at least one is known and none differs, `Some(false)` when one
    /// differs, `None` when nothing is comparable.
    pub fn same_client(&self) -> Option<bool> {
        let s = self.session?;
        let device = match (s.device(), self.obs.device) {
            (Some(a), Some(b)) => Some(a == b),
            _ => None,
        };
        let ua = match (s.ua, self.obs.ua) {
            (Some(a), Some(b)) => Some(a.family == b.family && a.os == b.os),
            _ => None,
        };
        match (device, ua) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (None, None) => None,
            _ => Some(true),
        }
    }
}

/// One detector. A closed set: adding one means a new file and a new variant here.
#[derive(Debug, Clone)]
pub enum Detector {
    /// New country or ASN mid-session.
    NewCountryAsn(new_country_asn::NewCountryAsn),
    /// Faster-than-possible movement.
    ImpossibleTravel(impossible_travel::ImpossibleTravel),
    /// One session alternating between two distant places.
    ConcurrentUse(concurrent_use::ConcurrentUse),
    /// Device fingerprint or client software change.
    DeviceSwap(device_swap::DeviceSwap),
    /// A token used outside the session, device or client it was bound to.
    TokenReplay(token_replay::TokenReplay),
    /// An already-rotated refresh token redeemed again.
    RefreshReuse(refresh_reuse::RefreshReuse),
    /// Sensitive scopes granted beyond the session's baseline.
    ScopeExpansion(scope_expansion::ScopeExpansion),
    /// A session starting where this user's sessions have never been.
    UnfamiliarPlace(unfamiliar_place::UnfamiliarPlace),
}

/// Every detector name, in a stable order.
pub const NAMES: [&str; 8] = [
    new_country_asn::NAME,
    impossible_travel::NAME,
    concurrent_use::NAME,
    device_swap::NAME,
    token_replay::NAME,
    refresh_reuse::NAME,
    scope_expansion::NAME,
    unfamiliar_place::NAME,
];

impl Detector {
    /// The detector's name, as in alerts and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::NewCountryAsn(_) => new_country_asn::NAME,
            Self::ImpossibleTravel(_) => impossible_travel::NAME,
            Self::ConcurrentUse(_) => concurrent_use::NAME,
            Self::DeviceSwap(_) => device_swap::NAME,
            Self::TokenReplay(_) => token_replay::NAME,
            Self::RefreshReuse(_) => refresh_reuse::NAME,
            Self::ScopeExpansion(_) => scope_expansion::NAME,
            Self::UnfamiliarPlace(_) => unfamiliar_place::NAME,
        }
    }

    /// Looks at one event and appends any findings.
    pub fn observe(&self, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
        match self {
            Self::NewCountryAsn(d) => d.observe(ctx, out),
            Self::ImpossibleTravel(d) => d.observe(ctx, out),
            Self::ConcurrentUse(d) => d.observe(ctx, out),
            Self::DeviceSwap(d) => d.observe(ctx, out),
            Self::TokenReplay(d) => d.observe(ctx, out),
            Self::RefreshReuse(d) => d.observe(ctx, out),
            Self::ScopeExpansion(d) => d.observe(ctx, out),
            Self::UnfamiliarPlace(d) => d.observe(ctx, out),
        }
    }
}

/// Settings of every detector; `enabled = false` turns one off.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorsConfig {
    /// New country or ASN.
    pub new_country_asn: new_country_asn::Config,
    /// Impossible travel.
    pub impossible_travel: impossible_travel::Config,
    /// Concurrent use.
    pub concurrent_use: concurrent_use::Config,
    /// Device or user-agent swap.
    pub device_swap: device_swap::Config,
    /// Token replay.
    pub token_replay: token_replay::Config,
    /// Refresh-token reuse.
    pub refresh_reuse: refresh_reuse::Config,
    /// Scope expansion.
    pub scope_expansion: scope_expansion::Config,
    /// A session starting somewhere new for its user.
    pub unfamiliar_place: unfamiliar_place::Config,
}

impl DetectorsConfig {
    /// Builds the enabled detectors, validating each configuration.
    pub fn build(&self) -> Result<Vec<Detector>, ConfigError> {
        let mut out = Vec::new();
        if self.new_country_asn.enabled {
            out.push(Detector::NewCountryAsn(
                new_country_asn::NewCountryAsn::new(&self.new_country_asn)?,
            ));
        }
        if self.impossible_travel.enabled {
            out.push(Detector::ImpossibleTravel(
                impossible_travel::ImpossibleTravel::new(&self.impossible_travel)?,
            ));
        }
        if self.concurrent_use.enabled {
            out.push(Detector::ConcurrentUse(concurrent_use::ConcurrentUse::new(
                &self.concurrent_use,
            )?));
        }
        if self.device_swap.enabled {
            out.push(Detector::DeviceSwap(device_swap::DeviceSwap::new(
                &self.device_swap,
            )?));
        }
        if self.token_replay.enabled {
            out.push(Detector::TokenReplay(token_replay::TokenReplay::new(
                &self.token_replay,
            )?));
        }
        if self.refresh_reuse.enabled {
            out.push(Detector::RefreshReuse(refresh_reuse::RefreshReuse::new(
                &self.refresh_reuse,
            )?));
        }
        if self.scope_expansion.enabled {
            out.push(Detector::ScopeExpansion(
                scope_expansion::ScopeExpansion::new(&self.scope_expansion)?,
            ));
        }
        if self.unfamiliar_place.enabled {
            out.push(Detector::UnfamiliarPlace(
                unfamiliar_place::UnfamiliarPlace::new(&self.unfamiliar_place)?,
            ));
        }
        Ok(out)
    }
}

/// Travel between two places: distance net of both accuracy radii (km) and the speed it
/// implies (km/h; infinite for simultaneous sightings at distinct places).
pub fn travel(from: &Place, to: &Place, to_time: i64) -> Option<(f64, f64)> {
    let (a, b) = (from.coords()?, to.coords()?);
    let raw = crate::geo::distance_km(a, b);
    let net = (raw - f64::from(from.accuracy_km) - f64::from(to.accuracy_km)).max(0.0);
    let dt_h = (to_time - from.last_seen).unsigned_abs() as f64 / 3_600_000.0;
    let speed = if net == 0.0 {
        0.0
    } else if dt_h == 0.0 {
        f64::INFINITY
    } else {
        net / dt_h
    };
    Some((net, speed))
}

/// Formats a place for messages.
pub fn describe(e: &Endpoint) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &e.city {
        parts.push(c.clone());
    }
    if let Some(c) = &e.country {
        parts.push(c.clone());
    }
    if let Some(a) = e.asn {
        parts.push(match &e.as_org {
            Some(o) => format!("AS{a} {o}"),
            None => format!("AS{a}"),
        });
    }
    if let Some(ip) = &e.ip {
        parts.push(ip.clone());
    }
    if parts.is_empty() {
        "an unknown place".into()
    } else {
        parts.join(", ")
    }
}
