//! What Vigil emits: findings, alerts (OCSF Detection Finding) and revocations (CAEP
//! `session-revoked` Security Event Tokens).
//!
//! Ids are derived from the input, never from a clock or a random source, so the same input
//! always yields the same alert and revocation ids and consumers can deduplicate on them.

use serde::Serialize;
use serde_json::{Value, json};
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
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
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

    /// Makes this the endpoint `ev` came from, reusing the strings' buffers: what
    /// [`Endpoint::of`] builds, without an allocation per event when the session stays put.
    pub fn assign(&mut self, ev: &SessionEvent) {
        fn set(slot: &mut Option<String>, v: Option<&str>) {
            match (slot.as_mut(), v) {
                (Some(cur), Some(v)) if cur == v => {}
                (Some(cur), Some(v)) => {
                    cur.clear();
                    cur.push_str(v);
                }
                (None, Some(v)) => *slot = Some(v.to_owned()),
                (_, None) => *slot = None,
            }
        }
        match ev.ip {
            Some(ip) => {
                use std::fmt::Write;
                let cur = self.ip.get_or_insert_with(String::new);
                cur.clear();
                let _ = write!(cur, "{ip}");
            }
            None => self.ip = None,
        }
        set(&mut self.country, ev.geo.country.as_deref());
        set(&mut self.city, ev.geo.city.as_deref());
        self.lat = ev.geo.lat;
        self.lon = ev.geo.lon;
        self.asn = ev.geo.asn;
        set(&mut self.as_org, ev.geo.as_org.as_deref());
        set(&mut self.user_agent, ev.user_agent.as_deref());
        set(&mut self.device_id, ev.device_id.as_deref());
        self.time_ms = Some(ev.time_ms);
    }

    fn to_ocsf(&self) -> Value {
        let mut ep = serde_json::Map::new();
        if let Some(ip) = &self.ip {
            ep.insert("ip".into(), json!(ip));
        }
        let mut loc = serde_json::Map::new();
        if let Some(c) = &self.country {
            loc.insert("country".into(), json!(c));
        }
        if let Some(c) = &self.city {
            loc.insert("city".into(), json!(c));
        }
        if let (Some(lat), Some(lon)) = (self.lat, self.lon) {
            loc.insert("lat".into(), json!(lat));
            loc.insert("long".into(), json!(lon));
        }
        if !loc.is_empty() {
            ep.insert("location".into(), Value::Object(loc));
        }
        if self.asn.is_some() || self.as_org.is_some() {
            ep.insert(
                "autonomous_system".into(),
                json!({ "number": self.asn, "name": self.as_org }),
            );
        }
        let mut ev = serde_json::Map::new();
        ev.insert("src_endpoint".into(), Value::Object(ep));
        if let Some(ua) = &self.user_agent {
            ev.insert("http_request".into(), json!({ "user_agent": ua }));
        }
        if let Some(d) = &self.device_id {
            ev.insert("device".into(), json!({ "uid": d, "type_id": 0 }));
        }
        Value::Object(ev)
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

    /// The alert as an OCSF 1.3 Detection Finding (class 2004).
    pub fn to_ocsf(&self, product_version: &str) -> Value {
        let f = &self.finding;
        let evidences: Vec<Value> = [&f.before, &f.after]
            .into_iter()
            .flatten()
            .map(Endpoint::to_ocsf)
            .collect();
        let anomalies: Vec<Value> = f
            .anomalies
            .iter()
            .map(|a| {
                json!({
                    "analysis_targets": [{ "name": self.subject.session_id, "type": "session" }],
                    "anomalies": [{
                        "observation_parameter": a.parameter,
                        "observation_type": "value",
                        "observed_pattern": a.observed,
                    }],
                    "baselines": [{
                        "observation_parameter": a.parameter,
                        "observation_type": "value",
                        "observed_pattern": a.baseline,
                    }],
                })
            })
            .collect();
        let (risk_level_id, risk_level) = match f.severity {
            crate::output::Severity::Low => (1, "Low"),
            crate::output::Severity::Medium => (2, "Medium"),
            crate::output::Severity::High => (3, "High"),
            crate::output::Severity::Critical => (4, "Critical"),
        };
        let confidence_id = match f.confidence {
            0..=39 => 1,
            40..=74 => 2,
            _ => 3,
        };
        json!({
            "class_uid": 2004,
            "class_name": "Detection Finding",
            "category_uid": 2,
            "category_name": "Findings",
            "activity_id": 1,
            "activity_name": "Create",
            "type_uid": 200401,
            "type_name": "Detection Finding: Create",
            "time": self.time_ms,
            "severity_id": f.severity.ocsf_id(),
            "severity": f.severity.caption(),
            "status_id": 1,
            "status": "New",
            "is_alert": true,
            "confidence_id": confidence_id,
            "confidence_score": f.confidence,
            "risk_level_id": risk_level_id,
            "risk_level": risk_level,
            "risk_score": f.confidence,
            "message": f.title,
            "metadata": {
                "version": OCSF_VERSION,
                "uid": self.id,
                "product": { "name": "Vigil", "vendor_name": "Vigil", "version": product_version },
                "correlation_uid": self.subject.session_id,
            },
            "finding_info": {
                "uid": self.id,
                "title": f.title,
                "desc": f.detail,
                "types": [f.detector],
                "analytic": { "uid": f.detector, "name": f.detector, "type_id": 1, "type": "Rule" },
                "related_events": [{ "uid": self.source_id, "product_uid": self.source.as_str() }],
            },
            "actor": {
                "user": { "uid": self.subject.user_id },
                "session": { "uid": self.subject.session_id },
            },
            "evidences": evidences,
            "anomaly_analyses": anomalies,
            "disposition_id": match self.action { Action::Revoke => 2, Action::StepUp => 10, Action::Alert => 15 },
            "disposition": match self.action { Action::Revoke => "Blocked", Action::StepUp => "Restricted", Action::Alert => "Detected" },
            "unmapped": {
                "vigil_action": self.action.as_str(),
                "tenant": self.subject.tenant,
                "source_format": self.source.as_str(),
                "session_risk": self.session_risk,
                "session_window": self.window,
            },
        })
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

    /// The revocation as SET claims (RFC 8417, OpenID SSF 1.0, CAEP `session-revoked`).
    /// `iat` is the issue time in epoch seconds, supplied by the caller.
    pub fn to_set(&self, issuer: &str, audience: &str, iat: i64) -> Value {
        let mut sub = serde_json::Map::new();
        sub.insert("format".into(), json!("complex"));
        sub.insert(
            "session".into(),
            json!({ "format": "opaque", "id": self.subject.session_id }),
        );
        sub.insert(
            "user".into(),
            json!({ "format": "opaque", "id": self.subject.user_id }),
        );
        if let Some(t) = &self.subject.tenant {
            sub.insert("tenant".into(), json!({ "format": "opaque", "id": t }));
        }
        json!({
            "iss": issuer,
            "iat": iat,
            "jti": self.id,
            "aud": audience,
            "txn": self.source_id,
            "sub_id": Value::Object(sub),
            "events": {
                CAEP_SESSION_REVOKED: {
                    "initiating_entity": "policy",
                    "reason_admin": { "en": self.reason_admin },
                    "reason_user": { "en": self.reason_user },
                    "event_timestamp": self.event_time_ms.div_euclid(1000),
                }
            }
        })
    }
}
