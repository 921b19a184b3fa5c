//! What Vigil emits: findings, alerts (OCSF Detection Finding) and revocations (CAEP
//! `session-revoked` Security Event Tokens).
//!
//! Ids are derived from the input, never from a clock or a random source, so the same input
//! always yields the same alert and revocation ids and consumers can deduplicate on them.

use std::fmt;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::{SessionEvent, SourceFormat};

/// The CAEP session-revoked event type URI.
pub const CAEP_SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// OCSF schema version the alerts follow.
pub const OCSF_VERSION: &str = "1.3.0";

/// A deterministic id in UUID form (version 8, RFC 9562 custom) from the given parts.
pub fn deterministic_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            id.push('-');
        }
        id.push(char::from(HEX[usize::from(x >> 4)]));
        id.push(char::from(HEX[usize::from(x & 0x0f)]));
    }
    id
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Likely misuse.
    Medium,
    /// Very likely a stolen session.
    High,
    /// A stolen or exposed credential in use, beyond reasonable doubt.
    Critical,
}

impl Severity {
    /// The severity a confidence level implies.
    pub fn from_confidence(c: u8) -> Self {
        match c {
            0..=39 => Self::Low,
            40..=69 => Self::Medium,
            70..=89 => Self::High,
            _ => Self::Critical,
        }
    }

    /// OCSF `severity_id` (2 Low .. 5 Critical).
    pub fn ocsf_id(self) -> u8 {
        match self {
            Self::Low => 2,
            Self::Medium => 3,
            Self::High => 4,
            Self::Critical => 5,
        }
    }

    /// OCSF severity caption.
    pub fn caption(self) -> &'static str {
        match self {
            Self::Low => "Low",
            Self::Medium => "Medium",
            Self::High => "High",
            Self::Critical => "Critical",
        }
    }
}

/// Where and with what the session was used: one side of an evidence pair.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Endpoint {
    /// Client IP.
    pub ip: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Latitude.
    pub lat: Option<f64>,
    /// Longitude.
    pub lon: Option<f64>,
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// Autonomous system organisation.
    pub as_org: Option<String>,
    /// User agent.
    pub user_agent: Option<String>,
    /// Device fingerprint.
    pub device_id: Option<String>,
    /// When the session was seen there, epoch ms.
    pub time_ms: Option<i64>,
}

impl Endpoint {
    /// The endpoint an event came from.
    pub fn of(ev: &SessionEvent) -> Self {
        Self {
            ip: ev.ip.map(|i| i.to_string()),
            country: ev.geo.country.clone(),
            city: ev.geo.city.clone(),
            lat: ev.geo.lat,
            lon: ev.geo.lon,
            asn: ev.geo.asn,
            as_org: ev.geo.as_org.clone(),
            user_agent: ev.user_agent.clone(),
            device_id: ev.device_id.clone(),
            time_ms: Some(ev.time_ms),
        }
    }
}

/// One observed deviation from the session's baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    /// What was measured (`country`, `asn`, `speed_kmh`, `device_id`, `scopes`, ...).
    pub parameter: &'static str,
    /// What the session showed before.
    pub baseline: String,
    /// What this event showed.
    pub observed: String,
}

/// A detector's verdict on one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Detector name (`impossible_travel`, ...).
    pub detector: &'static str,
    /// Confidence 0..=100 that the session is being misused.
    pub confidence: u8,
    /// Severity.
    pub severity: Severity,
    /// One-line title.
    pub title: String,
    /// What was seen, for the analyst.
    pub detail: String,
    /// The session's known endpoint before this event.
    pub before: Option<Endpoint>,
    /// The endpoint of this event.
    pub after: Option<Endpoint>,
    /// The deviations measured.
    pub anomalies: Vec<Anomaly>,
}

/// What policy decided for a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Raise an alert only.
    Alert,
    /// Ask the user to prove themselves again (alert flagged for step-up).
    StepUp,
    /// Revoke the session.
    Revoke,
}

impl Action {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::StepUp => "step_up",
            Self::Revoke => "revoke",
        }
    }
}

/// Who the session belongs to, as a revocation and an alert name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subject {
    /// Session id.
    pub session_id: String,
    /// User id.
    pub user_id: String,
    /// Tenant.
    pub tenant: Option<String>,
}

impl Subject {
    /// The subject of an event.
    pub fn of(ev: &SessionEvent) -> Self {
        Self {
            session_id: ev.session_id.clone(),
            user_id: ev.user_id.clone(),
            tenant: ev.tenant.clone(),
        }
    }
}

/// The session's recent activity when the alert fired, for the analyst.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WindowStats {
    /// Events in the last minute.
    pub events_per_minute: u32,
    /// Distinct client IPs in the window.
    pub distinct_ips: u32,
    /// Distinct ASNs in the window.
    pub distinct_asns: u32,
    /// Distinct device fingerprints in the window.
    pub distinct_devices: u32,
    /// Distinct user agents in the window.
    pub distinct_user_agents: u32,
}

/// An alert: one finding, with the action policy chose and the record that triggered it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Deterministic id.
    pub id: String,
    /// Time of the triggering event, epoch ms.
    pub time_ms: i64,
    /// The session.
    pub subject: Subject,
    /// The finding.
    pub finding: Finding,
    /// The action taken.
    pub action: Action,
    /// Id of the triggering source record.
    pub source_id: String,
    /// Format of the triggering source record.
    pub source: SourceFormat,
    /// The session's recent activity.
    pub window: WindowStats,
    /// Combined risk of the session's recent findings, 0..=100, that chose the action.
    pub session_risk: u8,
}

impl Alert {
    /// Builds an alert with its deterministic id.
    pub fn new(
        ev: &SessionEvent,
        finding: Finding,
        action: Action,
        window: WindowStats,
        session_risk: u8,
    ) -> Self {
        let id = deterministic_id(&["alert", finding.detector, &ev.session_id, &ev.source_id]);
        Self {
            id,
            time_ms: ev.time_ms,
            subject: Subject::of(ev),
            finding,
            action,
            source_id: ev.source_id.clone(),
            source: ev.source,
            window,
            session_risk,
        }
    }

    /// The alert as an OCSF 1.3 Detection Finding (class 2004), serialised straight from the
    /// alert (`Display` prints it as compact JSON).
    pub fn to_ocsf<'a>(&'a self, product_version: &'a str) -> OcsfFinding<'a> {
        OcsfFinding {
            alert: self,
            product_version,
        }
    }
}

/// An [`Alert`] as an OCSF 1.3 Detection Finding (class 2004): what [`Alert::to_ocsf`]
/// returns, serialised without building a JSON tree first.
#[derive(Debug, Clone, Copy)]
pub struct OcsfFinding<'a> {
    alert: &'a Alert,
    product_version: &'a str,
}

impl fmt::Display for OcsfFinding<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for OcsfFinding<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let a = self.alert;
        let f = &a.finding;
        let (risk_level_id, risk_level) = match f.severity {
            Severity::Low => (1, "Low"),
            Severity::Medium => (2, "Medium"),
            Severity::High => (3, "High"),
            Severity::Critical => (4, "Critical"),
        };
        let confidence_id = match f.confidence {
            0..=39 => 1,
            40..=74 => 2,
            _ => 3,
        };
        let (disposition_id, disposition) = match a.action {
            Action::Revoke => (2, "Blocked"),
            Action::StepUp => (10, "Restricted"),
            Action::Alert => (15, "Detected"),
        };
        let session = &a.subject.session_id;
        let mut m = s.serialize_map(Some(28))?;
        m.serialize_entry("activity_id", &1)?;
        m.serialize_entry("activity_name", "Create")?;
        m.serialize_entry(
            "actor",
            &ocsf::Actor {
                user: ocsf::Uid {
                    uid: &a.subject.user_id,
                },
                session: ocsf::Uid { uid: session },
            },
        )?;
        m.serialize_entry(
            "anomaly_analyses",
            &ocsf::Seq(f.anomalies.iter().map(|x| ocsf::AnomalyAnalysis {
                analysis_targets: [ocsf::Target {
                    name: session,
                    r#type: "session",
                }],
                anomalies: [ocsf::Observation {
                    observation_parameter: x.parameter,
                    observation_type: "value",
                    observed_pattern: &x.observed,
                }],
                baselines: [ocsf::Observation {
                    observation_parameter: x.parameter,
                    observation_type: "value",
                    observed_pattern: &x.baseline,
                }],
            })),
        )?;
        m.serialize_entry("category_name", "Findings")?;
        m.serialize_entry("category_uid", &2)?;
        m.serialize_entry("class_name", "Detection Finding")?;
        m.serialize_entry("class_uid", &2004)?;
        m.serialize_entry("confidence_id", &confidence_id)?;
        m.serialize_entry("confidence_score", &f.confidence)?;
        m.serialize_entry("disposition", disposition)?;
        m.serialize_entry("disposition_id", &disposition_id)?;
        m.serialize_entry(
            "evidences",
            &ocsf::Seq(
                [&f.before, &f.after]
                    .into_iter()
                    .flatten()
                    .map(ocsf::Evidence::of),
            ),
        )?;
        m.serialize_entry(
            "finding_info",
            &ocsf::FindingInfo {
                analytic: ocsf::Analytic {
                    name: f.detector,
                    r#type: "Rule",
                    type_id: 1,
                    uid: f.detector,
                },
                desc: &f.detail,
                related_events: [ocsf::RelatedEvent {
                    product_uid: a.source.as_str(),
                    uid: &a.source_id,
                }],
                title: &f.title,
                types: [f.detector],
                uid: &a.id,
            },
        )?;
        m.serialize_entry("is_alert", &true)?;
        m.serialize_entry("message", &f.title)?;
        m.serialize_entry(
            "metadata",
            &ocsf::Metadata {
                correlation_uid: session,
                product: ocsf::Product {
                    name: "Vigil",
                    vendor_name: "Vigil",
                    version: self.product_version,
                },
                uid: &a.id,
                version: OCSF_VERSION,
            },
        )?;
        m.serialize_entry("risk_level", risk_level)?;
        m.serialize_entry("risk_level_id", &risk_level_id)?;
        m.serialize_entry("risk_score", &f.confidence)?;
        m.serialize_entry("severity", f.severity.caption())?;
        m.serialize_entry("severity_id", &f.severity.ocsf_id())?;
        m.serialize_entry("status", "New")?;
        m.serialize_entry("status_id", &1)?;
        m.serialize_entry("time", &a.time_ms)?;
        m.serialize_entry("type_name", "Detection Finding: Create")?;
        m.serialize_entry("type_uid", &200401)?;
        m.serialize_entry(
            "unmapped",
            &ocsf::Unmapped {
                session_risk: a.session_risk,
                session_window: a.window,
                source_format: a.source.as_str(),
                tenant: a.subject.tenant.as_deref(),
                vigil_action: a.action.as_str(),
            },
        )?;
        m.end()
    }
}

/// The parts of an OCSF Detection Finding, borrowed from the alert; fields in the order
/// they are written.
mod ocsf {
    use serde::{Serialize, Serializer};

    use super::{Endpoint, WindowStats};

    /// A sequence written from an iterator, without collecting it first.
    pub struct Seq<I>(pub I);

    impl<I: Iterator<Item = T> + Clone, T: Serialize> Serialize for Seq<I> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.clone())
        }
    }

    #[derive(Serialize)]
    pub struct Uid<'a> {
        pub uid: &'a str,
    }

    #[derive(Serialize)]
    pub struct Actor<'a> {
        pub session: Uid<'a>,
        pub user: Uid<'a>,
    }

    #[derive(Serialize)]
    pub struct Target<'a> {
        pub name: &'a str,
        pub r#type: &'static str,
    }

    #[derive(Serialize)]
    pub struct Observation<'a> {
        pub observation_parameter: &'static str,
        pub observation_type: &'static str,
        pub observed_pattern: &'a str,
    }

    #[derive(Serialize)]
    pub struct AnomalyAnalysis<'a> {
        pub analysis_targets: [Target<'a>; 1],
        pub anomalies: [Observation<'a>; 1],
        pub baselines: [Observation<'a>; 1],
    }

    #[derive(Serialize)]
    pub struct Analytic {
        pub name: &'static str,
        pub r#type: &'static str,
        pub type_id: u8,
        pub uid: &'static str,
    }

    #[derive(Serialize)]
    pub struct RelatedEvent<'a> {
        pub product_uid: &'static str,
        pub uid: &'a str,
    }

    #[derive(Serialize)]
    pub struct FindingInfo<'a> {
        pub analytic: Analytic,
        pub desc: &'a str,
        pub related_events: [RelatedEvent<'a>; 1],
        pub title: &'a str,
        pub types: [&'static str; 1],
        pub uid: &'a str,
    }

    #[derive(Serialize)]
    pub struct Product<'a> {
        pub name: &'static str,
        pub vendor_name: &'static str,
        pub version: &'a str,
    }

    #[derive(Serialize)]
    pub struct Metadata<'a> {
        pub correlation_uid: &'a str,
        pub product: Product<'a>,
        pub uid: &'a str,
        pub version: &'static str,
    }

    #[derive(Serialize)]
    pub struct Unmapped<'a> {
        pub session_risk: u8,
        pub session_window: WindowStats,
        pub source_format: &'static str,
        pub tenant: Option<&'a str>,
        pub vigil_action: &'static str,
    }

    /// One endpoint as OCSF evidence: where the session was, on which client.
    #[derive(Serialize)]
    pub struct Evidence<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        device: Option<Device<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        http_request: Option<HttpRequest<'a>>,
        src_endpoint: SrcEndpoint<'a>,
    }

    impl<'a> Evidence<'a> {
        pub fn of(e: &'a Endpoint) -> Self {
            let location = Location {
                city: e.city.as_deref(),
                country: e.country.as_deref(),
                lat_long: e.lat.zip(e.lon),
            };
            let has_location = location.city.is_some()
                || location.country.is_some()
                || location.lat_long.is_some();
            Self {
                device: e.device_id.as_deref().map(|uid| Device { type_id: 0, uid }),
                http_request: e
                    .user_agent
                    .as_deref()
                    .map(|user_agent| HttpRequest { user_agent }),
                src_endpoint: SrcEndpoint {
                    autonomous_system: (e.asn.is_some() || e.as_org.is_some()).then_some(
                        AutonomousSystem {
                            name: e.as_org.as_deref(),
                            number: e.asn,
                        },
                    ),
                    ip: e.ip.as_deref(),
                    location: has_location.then_some(location),
                },
            }
        }
    }

    #[derive(Serialize)]
    struct Device<'a> {
        type_id: u8,
        uid: &'a str,
    }

    #[derive(Serialize)]
    struct HttpRequest<'a> {
        user_agent: &'a str,
    }

    #[derive(Serialize)]
    struct SrcEndpoint<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        autonomous_system: Option<AutonomousSystem<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ip: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        location: Option<Location<'a>>,
    }

    #[derive(Serialize)]
    struct AutonomousSystem<'a> {
        name: Option<&'a str>,
        number: Option<u32>,
    }

    struct Location<'a> {
        city: Option<&'a str>,
        country: Option<&'a str>,
        lat_long: Option<(f64, f64)>,
    }

    impl Serialize for Location<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut m = s.serialize_map(None)?;
            if let Some(c) = self.city {
                m.serialize_entry("city", c)?;
            }
            if let Some(c) = self.country {
                m.serialize_entry("country", c)?;
            }
            if let Some((lat, lon)) = self.lat_long {
                m.serialize_entry("lat", &lat)?;
                m.serialize_entry("long", &lon)?;
            }
            m.end()
        }
    }
}

/// A decision to revoke a session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Revocation {
    /// Deterministic id; the SET `jti`.
    pub id: String,
    /// The session revoked.
    pub subject: Subject,
    /// Time of the triggering event, epoch ms; the CAEP `event_timestamp`.
    pub event_time_ms: i64,
    /// Why, for administrators; never empty.
    pub reason_admin: String,
    /// Why, for the user.
    pub reason_user: String,
    /// Detectors whose findings led to the revocation.
    pub detectors: Vec<&'static str>,
    /// Id of the triggering source record; the SET `txn`.
    pub source_id: String,
}

impl Revocation {
    /// Builds a revocation with its deterministic id.
    pub fn new(ev: &SessionEvent, detectors: Vec<&'static str>, reason_admin: String) -> Self {
        Self {
            id: deterministic_id(&["revoke", &ev.session_id, &ev.source_id]),
            subject: Subject::of(ev),
            event_time_ms: ev.time_ms,
            reason_admin,
            reason_user: "Your session was ended for your protection. Please sign in again.".into(),
            detectors,
            source_id: ev.source_id.clone(),
        }
    }

    /// The revocation as SET claims (RFC 8417, OpenID SSF 1.0, CAEP `session-revoked`), as a
    /// JSON tree. `iat` is the issue time in epoch seconds, supplied by the caller.
    pub fn to_set(&self, issuer: &str, audience: &str, iat: i64) -> Value {
        serde_json::to_value(self.set_claims(issuer, audience, iat))
            .expect("SET claims are strings and integers")
    }

    /// The same claims as [`Revocation::to_set`], serialised straight from the revocation
    /// (no tree built first): what `vigil run` writes and signs for each revocation.
    pub fn set_claims<'a>(&'a self, issuer: &'a str, audience: &'a str, iat: i64) -> SetClaims<'a> {
        SetClaims {
            revocation: self,
            issuer,
            audience,
            iat,
        }
    }
}

/// A [`Revocation`]'s SET claims, written in the key order of a JSON tree's `to_string` (keys
/// sorted), so the bytes are those [`Revocation::to_set`] gives.
#[derive(Debug, Clone, Copy)]
pub struct SetClaims<'a> {
    revocation: &'a Revocation,
    issuer: &'a str,
    audience: &'a str,
    iat: i64,
}

impl Serialize for SetClaims<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        /// `{"format":"opaque","id":...}`
        struct Opaque<'a>(&'a str);
        impl Serialize for Opaque<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("format", "opaque")?;
                m.serialize_entry("id", self.0)?;
                m.end()
            }
        }
        /// `{key: value}`
        struct One<V>(&'static str, V);
        impl<V: Serialize> Serialize for One<V> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(self.0, &self.1)?;
                m.end()
            }
        }
        struct SubId<'a>(&'a Subject);
        impl Serialize for SubId<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("format", "complex")?;
                m.serialize_entry("session", &Opaque(&self.0.session_id))?;
                if let Some(t) = &self.0.tenant {
                    m.serialize_entry("tenant", &Opaque(t))?;
                }
                m.serialize_entry("user", &Opaque(&self.0.user_id))?;
                m.end()
            }
        }
        struct Revoked<'a>(&'a Revocation);
        impl Serialize for Revoked<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(4))?;
                m.serialize_entry("event_timestamp", &self.0.event_time_ms.div_euclid(1000))?;
                m.serialize_entry("initiating_entity", "policy")?;
                m.serialize_entry("reason_admin", &One("en", &self.0.reason_admin))?;
                m.serialize_entry("reason_user", &One("en", &self.0.reason_user))?;
                m.end()
            }
        }
        let r = self.revocation;
        let mut m = s.serialize_map(Some(7))?;
        m.serialize_entry("aud", self.audience)?;
        m.serialize_entry("events", &One(CAEP_SESSION_REVOKED, Revoked(r)))?;
        m.serialize_entry("iat", &self.iat)?;
        m.serialize_entry("iss", self.issuer)?;
        m.serialize_entry("jti", &r.id)?;
        m.serialize_entry("sub_id", &SubId(&r.subject))?;
        m.serialize_entry("txn", &r.source_id)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revocation(tenant: Option<&str>) -> Revocation {
        Revocation {
            id: "rv-1".into(),
            subject: Subject {
                session_id: "s-\"quoted\"".into(),
                user_id: "alice@example.com".into(),
                tenant: tenant.map(Into::into),
            },
            event_time_ms: 1_700_000_123_456,
            reason_admin: "Session used from two countries at once".into(),
            reason_user: "Please sign in again.".into(),
            detectors: vec!["concurrent_use"],
            source_id: "evt-9".into(),
        }
    }

    /// The SET's bytes as published, pinned: enforcement services and SIEM parsers read them.
    #[test]
    fn set_claims_are_written_as_pinned() {
        let with_tenant = r#"{"aud":"https://rp.example","events":{"https://schemas.openid.net/secevent/caep/event-type/session-revoked":{"event_timestamp":1700000123,"initiating_entity":"policy","reason_admin":{"en":"Session used from two countries at once"},"reason_user":{"en":"Please sign in again."}}},"iat":1700000200,"iss":"https://vigil.example/","jti":"rv-1","sub_id":{"format":"complex","session":{"format":"opaque","id":"s-\"quoted\""},"tenant":{"format":"opaque","id":"t-1"},"user":{"format":"opaque","id":"alice@example.com"}},"txn":"evt-9"}"#;
        let without_tenant = with_tenant.replace(r#""tenant":{"format":"opaque","id":"t-1"},"#, "");
        for (tenant, want) in [(Some("t-1"), with_tenant), (None, without_tenant.as_str())] {
            let r = revocation(tenant);
            let claims = r.set_claims(
                "https://vigil.example/",
                "https://rp.example",
                1_700_000_200,
            );
            assert_eq!(serde_json::to_string(&claims).expect("serialises"), want);
            let tree = r.to_set(
                "https://vigil.example/",
                "https://rp.example",
                1_700_000_200,
            );
            assert_eq!(tree.to_string(), want);
        }
    }
}
