//! Policy: how findings become actions.
//!
//! A session's risk is the noisy-OR of its findings' confidences within the evidence window:
//! `1 - Π(1 - cᵢ)`, counting each detector once with its strongest finding (the engine
//! collapses repeats: the same signal seen again is not new evidence). Independent weak
//! signals add up (two detectors at 60 make 84), a single strong one stands alone. The risk is then compared with the thresholds. A detector may be
//! capped (`max_action`): its finding alone cannot go beyond the cap, though it still adds to
//! the risk that other findings act on.

use std::collections::BTreeMap;

use serde::Deserialize;
use vigil_model::Action;

use crate::config::{ConfigError, HumanDuration, check_range};
use crate::detectors;

/// A per-detector cap.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorPolicy {
    /// The strongest action this detector's finding may cause on its own.
    pub max_action: ActionName,
}

/// Action names as written in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionName {
    /// Alert only.
    Alert,
    /// Step-up authentication.
    StepUp,
    /// Revocation.
    Revoke,
}

impl From<ActionName> for Action {
    fn from(a: ActionName) -> Self {
        match a {
            ActionName::Alert => Action::Alert,
            ActionName::StepUp => Action::StepUp,
            ActionName::Revoke => Action::Revoke,
        }
    }
}

/// Thresholds on session risk (0..=100).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Risk at or above which the session is revoked.
    pub revoke_at: u8,
    /// Risk at or above which step-up is requested.
    pub step_up_at: u8,
    /// Risk at or above which an alert is raised; below it findings are only counted.
    pub alert_at: u8,
    /// How long a finding keeps adding to the session's risk.
    pub evidence_window: HumanDuration,
    /// Per-detector caps, by detector name.
    pub detectors: BTreeMap<String, DetectorPolicy>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let mut detectors = BTreeMap::new();
        detectors.insert(
            detectors::scope_expansion::NAME.to_owned(),
            DetectorPolicy {
                max_action: ActionName::StepUp,
            },
        );
        Self {
            revoke_at: 80,
            step_up_at: 60,
            alert_at: 30,
            evidence_window: HumanDuration::secs(1800),
            detectors,
        }
    }
}

/// Validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    revoke_at: u8,
    step_up_at: u8,
    alert_at: u8,
    /// Evidence window, ms.
    pub evidence_window_ms: i64,
    caps: BTreeMap<&'static str, Action>,
}

/// What policy decided for one finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The action, or `None` when the risk is below `alert_at`.
    pub action: Option<Action>,
    /// The combined session risk.
    pub risk: u8,
}

impl Policy {
    /// Validates the thresholds and detector names.
    pub fn new(c: &PolicyConfig) -> Result<Self, ConfigError> {
        check_range("policy.revoke_at", c.revoke_at, 1, 100, "between 1 and 100")?;
        check_range(
            "policy.step_up_at",
            c.step_up_at,
            1,
            c.revoke_at,
            "between 1 and policy.revoke_at",
        )?;
        check_range(
            "policy.alert_at",
            c.alert_at,
            1,
            c.step_up_at,
            "between 1 and policy.step_up_at",
        )?;
        let mut caps = BTreeMap::new();
        for (name, p) in &c.detectors {
            let Some(known) = detectors::NAMES.iter().find(|n| **n == name.as_str()) else {
                return Err(ConfigError::UnknownDetector {
                    name: name.clone(),
                    known: detectors::NAMES.join(", "),
                });
            };
            caps.insert(*known, Action::from(p.max_action));
        }
        Ok(Self {
            revoke_at: c.revoke_at,
            step_up_at: c.step_up_at,
            alert_at: c.alert_at,
            evidence_window_ms: c.evidence_window.ms(),
            caps,
        })
    }

    /// Decides for a finding of `detector` with `confidence`, given the confidences of the
    /// session's other findings still in the evidence window.
    pub fn decide(&self, detector: &str, confidence: u8, others: &[u8]) -> Decision {
        let keep: f64 = others
            .iter()
            .chain(std::iter::once(&confidence))
            .map(|c| 1.0 - f64::from((*c).min(100)) / 100.0)
            .product();
        let risk = ((1.0 - keep) * 100.0).round().clamp(0.0, 100.0) as u8;
        let mut action = if risk >= self.revoke_at {
            Some(Action::Revoke)
        } else if risk >= self.step_up_at {
            Some(Action::StepUp)
        } else if risk >= self.alert_at {
            Some(Action::Alert)
        } else {
            None
        };
        if others.is_empty()
            && let (Some(a), Some(cap)) = (action, self.caps.get(detector))
        {
            action = Some(a.min(*cap));
        }
        Decision { action, risk }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noisy_or_combines_and_caps_apply_alone() {
        let p = Policy::new(&PolicyConfig::default()).expect("defaults are valid");
        assert_eq!(
            p.decide("impossible_travel", 85, &[]).action,
            Some(Action::Revoke)
        );
        assert_eq!(
            p.decide("device_swap", 70, &[]).action,
            Some(Action::StepUp)
        );
        assert_eq!(p.decide("device_swap", 20, &[]).action, None);
        let d = p.decide("device_swap", 60, &[60]);
        assert_eq!((d.risk, d.action), (84, Some(Action::Revoke)));
        assert_eq!(
            p.decide("scope_expansion", 95, &[]).action,
            Some(Action::StepUp)
        );
        assert_eq!(
            p.decide("scope_expansion", 95, &[50]).action,
            Some(Action::Revoke)
        );
    }

    #[test]
    fn rejects_bad_thresholds_and_unknown_detectors() {
        let c = PolicyConfig {
            step_up_at: 90,
            ..PolicyConfig::default()
        };
        assert!(Policy::new(&c).is_err());
        let mut c = PolicyConfig::default();
        c.detectors.insert(
            "nope".into(),
            DetectorPolicy {
                max_action: ActionName::Alert,
            },
        );
        assert!(matches!(
            Policy::new(&c),
            Err(ConfigError::UnknownDetector { .. })
        ));
    }
}
