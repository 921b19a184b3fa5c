//! Device or user-agent swap within a session.
//!
//! **Attack.** A stolen cookie loaded into another browser (infostealer logs imported with a
//! cookie editor, an AiTM proxy's own client) or replayed with a scripting client.
//!
//! **Signal.** The device fingerprint (Okta `deviceFingerprint`, Entra `deviceId`) differs from the
//! session's first one and the session has used more distinct fingerprints than allowed; or the client software family (Chrome, Firefox, python-requests, ...) or the OS
//! family changed.
//!
//! **Thresholds and why.** By default a second fingerprint in one session fires: Okta's browser
//! fingerprint is per browser, so a session cookie moving to a second browser is exactly the
//! replay signal. Deployments whose IdP mints a fingerprint per OAuth client can raise
//! `max_devices` (Elastic raised its distinct-device-per-session threshold to 4 because normal
//! OAuth flows produce several). A switch to a scripting client (curl, python, Go, ...) scores
//! 85, other family or OS changes 70, a device change 80.
//!
//! **Benign cases it must not flag.** A browser version bump (Chrome 120 to 121), a missing
//! user agent or fingerprint on some events, the same fingerprint seen again.

use serde::Deserialize;
use vigil_model::{Anomaly, Finding};

use super::Ctx;
use crate::config::{ConfigError, check_range};
use crate::ua;

/// Detector name.
pub const NAME: &str = "device_swap";

/// Settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Distinct device fingerprints one session may use.
    pub max_devices: u32,
    /// Confidence for a device fingerprint change.
    pub device_confidence: u8,
    /// Confidence for a browser or OS family change.
    pub client_confidence: u8,
    /// Confidence for a change to a scripting or command-line HTTP client.
    pub scripted_client_confidence: u8,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: true,
            max_devices: 1,
            device_confidence: 80,
            client_confidence: 70,
            scripted_client_confidence: 85,
        }
    }
}

/// The detector.
#[derive(Debug, Clone)]
pub struct DeviceSwap {
    cfg: Config,
}

/// Families of scripting clients and headless browsers: no person browses with these.
const SCRIPTED: [&str; 11] = [
    "curl",
    "wget",
    "python",
    "go",
    "okhttp",
    "java",
    "node",
    "powershell",
    "postman",
    "headless_chrome",
    "other",
];

impl DeviceSwap {
    /// Validates the settings.
    pub fn new(cfg: &Config) -> Result<Self, ConfigError> {
        check_range(
            "detectors.device_swap.max_devices",
            cfg.max_devices,
            1,
            4,
            "between 1 and 4",
        )?;
        for (f, v) in [
            (
                "detectors.device_swap.device_confidence",
                cfg.device_confidence,
            ),
            (
                "detectors.device_swap.client_confidence",
                cfg.client_confidence,
            ),
            (
                "detectors.device_swap.scripted_client_confidence",
                cfg.scripted_client_confidence,
            ),
        ] {
            check_range(f, v, 0, 100, "between 0 and 100")?;
        }
        Ok(Self { cfg: cfg.clone() })
    }

    /// Looks at one event.
    pub fn observe(&self, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
        let Some(s) = ctx.session else { return };
        let mut confidence = 0u8;
        let mut anomalies = Vec::new();
        let mut what = Vec::new();
        let now = ctx.ev.time_ms;
        if let (Some(base), Some(dev)) = (s.device(), ctx.obs.device) {
            // Counted over the session's life (the last four fingerprints), not the state
            // window: a cookie that moves browsers after a quiet spell is still a swap.
            let window = i64::MAX / 2;
            let seen = s.devices.contains(dev, now, window);
            let distinct = s.devices.count(now, window) as u32 + u32::from(!seen);
            if dev != base && !seen && distinct > self.cfg.max_devices {
                confidence = self.cfg.device_confidence;
                anomalies.push(Anomaly {
                    parameter: "device_id",
                    baseline: s
                        .last_endpoint
                        .device_id
                        .as_deref()
                        .unwrap_or_default()
                        .to_owned(),
                    observed: ctx.ev.device_id.clone().unwrap_or_default(),
                });
                what.push("device fingerprint");
            }
        }
        if let (Some(base), Some(cur)) = (s.ua, ctx.obs.ua) {
            let family_changed = base.family != cur.family;
            let os_changed =
                base.os != cur.os && base.os != ua::Os::Unknown && cur.os != ua::Os::Unknown;
            if family_changed || os_changed {
                let name = ua::family_name(cur.family);
                let c = if family_changed && SCRIPTED.contains(&name) {
                    self.cfg.scripted_client_confidence
                } else {
                    self.cfg.client_confidence
                };
                confidence = confidence.max(c);
                anomalies.push(Anomaly {
                    parameter: "user_agent",
                    baseline: s
                        .last_endpoint
                        .user_agent
                        .as_deref()
                        .unwrap_or_default()
                        .to_owned(),
                    observed: ctx.ev.user_agent.clone().unwrap_or_default(),
                });
                what.push(if family_changed {
                    "client software"
                } else {
                    "operating system"
                });
            }
        }
        if confidence == 0 {
            return;
        }
        let what = what.join(" and ");
        out.push(ctx.finding(
            NAME,
            confidence,
            format!("Session continued on another {what}"),
            format!("Session {} changed {what} mid-session.", ctx.ev.session_id),
            anomalies,
        ));
    }
}
