//! Engine configuration: the `[engine]`-level TOML tables, validated once.
//!
//! Every struct denies unknown fields so a typo is an error at start-up, not a detector
//! silently running on defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::detectors::DetectorsConfig;
use crate::policy::PolicyConfig;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A value is out of its allowed range.
    #[error("{field} is {value}, but must be {expected}")]
    OutOfRange {
        /// The setting.
        field: &'static str,
        /// What it was set to.
        value: String,
        /// The allowed range.
        expected: &'static str,
    },
    /// An unknown detector name in a per-detector table.
    #[error("policy.detectors has unknown detector {name:?} (known: {known})")]
    UnknownDetector {
        /// The name given.
        name: String,
        /// The names Vigil knows.
        known: String,
    },
}

/// A duration written for people: `"30s"`, `"5m"`, `"12h"`, `"7d"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// From seconds.
    pub const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }

    /// In milliseconds, saturating.
    pub fn ms(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {s:?}: {e} (write e.g. \"30s\", \"5m\", \"12h\", \"7d\")"
                ))
            })
    }
}

impl serde::Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// The whole engine configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// State bounds and time handling.
    pub state: StateConfig,
    /// Network classification shared by the detectors.
    pub network: NetworkConfig,
    /// Per-detector settings.
    pub detectors: DetectorsConfig,
    /// How findings become actions.
    pub policy: PolicyConfig,
    /// Session lifetime governance per identity type.
    pub governance: crate::governance::GovernanceConfig,
}

/// Bounds on what the engine remembers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// A session with no event for this long is forgotten.
    pub idle_ttl: HumanDuration,
    /// A session older than this is forgotten whatever its activity.
    pub absolute_ttl: HumanDuration,
    /// Most sessions held at once; beyond it the least recently seen are evicted.
    pub max_sessions: usize,
    /// Most token and refresh-token bindings held at once (each).
    pub max_tokens: usize,
    /// How long a token binding is kept after its last use.
    pub token_ttl: HumanDuration,
    /// How far behind the newest event time an event may arrive and still be processed.
    pub out_of_order_grace: HumanDuration,
    /// Window for per-session distinct counts (IPs, ASNs, devices, user agents).
    pub window: HumanDuration,
    /// Most user baselines held at once (see `detectors.unfamiliar_place`).
    pub max_users: usize,
    /// How long a user baseline is kept after the user's last event.
    pub user_ttl: HumanDuration,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            idle_ttl: HumanDuration::secs(12 * 3600),
            absolute_ttl: HumanDuration::secs(7 * 86_400),
            max_sessions: 1_000_000,
            max_tokens: 2_000_000,
            token_ttl: HumanDuration::secs(24 * 3600),
            out_of_order_grace: HumanDuration::secs(300),
            window: HumanDuration::secs(600),
            max_users: 1_000_000,
            user_ttl: HumanDuration::secs(90 * 86_400),
        }
    }
}

/// Which networks are relays (benign location changes) and which are hosting providers
/// (where AiTM proxies and replay tooling run).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Corporate VPN, secure web gateway and privacy-relay ASNs: a move onto or off them is
    /// not evidence of theft.
    pub relay_asns: Vec<u32>,
    /// Cloud and hosting ASNs: a session suddenly used from one is a strong replay signal.
    pub hosting_asns: Vec<u32>,
    /// Location accuracy assumed when the source gives none, in km.
    pub default_accuracy_km: u32,
    /// Two sightings closer than this (km) are the same place (Okta treats 20 km as not new).
    pub same_place_km: f64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            // Zscaler, Cloudflare WARP, Apple iCloud Private Relay (Akamai egress), Netskope.
            relay_asns: vec![53813, 62044, 13335, 36183, 55256],
            // AWS, Azure, Google Cloud, DigitalOcean, OVH, Hetzner, Linode, Vultr, M247,
            // Oracle Cloud, Alibaba Cloud, Tencent Cloud.
            hosting_asns: vec![
                16509, 14618, 8075, 396982, 14061, 16276, 24940, 63949, 20473, 9009, 31898, 45102,
                132203,
            ],
            default_accuracy_km: 25,
            same_place_km: 20.0,
        }
    }
}

/// Per-detector action caps: `[policy.detectors.<name>] max_action = "step_up"`.
pub type DetectorPolicies = BTreeMap<String, crate::policy::DetectorPolicy>;

/// Checks that `v` lies in `lo..=hi`.
pub fn check_range<T: PartialOrd + fmt::Display>(
    field: &'static str,
    v: T,
    lo: T,
    hi: T,
    expected: &'static str,
) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::OutOfRange {
            field,
            value: v.to_string(),
            expected,
        });
    }
    Ok(())
}
