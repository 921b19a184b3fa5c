//! The normalized post-authentication event every adapter produces.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::token::TokenHash;

/// What happened in the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A new session was established (primary authentication finished).
    SessionStart,
    /// An access, ID or refresh token was issued within the session.
    TokenIssued,
    /// A refresh token was redeemed (and possibly rotated).
    TokenRefreshed,
    /// An application or API was accessed with the session or one of its tokens.
    Access,
    /// An MFA or step-up challenge was completed in the session.
    Mfa,
    /// The user ended the session.
    Logout,
    /// The IdP or an administrator revoked the session.
    Revocation,
    /// The user's account changed in a way that must end every live session: deactivated,
    /// suspended, deleted, password or MFA reset, credentials changed
    /// ([`SessionEvent::lifecycle`] says which). Not tied to one session.
    UserLifecycle,
    /// A token was found exposed (secret scanner, ticket or chat DLP hook): its keyed hash is
    /// in [`SessionEvent::token`], where it was found in [`SessionEvent::found_in`]. Not tied
    /// to one session.
    TokenExposed,
}

impl EventKind {
    /// All kinds, in schema order.
    pub const ALL: [EventKind; 9] = [
        Self::SessionStart,
        Self::TokenIssued,
        Self::TokenRefreshed,
        Self::Access,
        Self::Mfa,
        Self::Logout,
        Self::Revocation,
        Self::UserLifecycle,
        Self::TokenExposed,
    ];

    /// The schema name of the kind (`session_start`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionStart => "session_start",
            Self::TokenIssued => "token_issued",
            Self::TokenRefreshed => "token_refreshed",
            Self::Access => "access",
            Self::Mfa => "mfa",
            Self::Logout => "logout",
            Self::Revocation => "revocation",
            Self::UserLifecycle => "user_lifecycle",
            Self::TokenExposed => "token_exposed",
        }
    }

    /// Parses a schema name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the kind ends the session.
    pub fn ends_session(self) -> bool {
        matches!(self, Self::Logout | Self::Revocation)
    }

    /// Whether the event belongs to one session (everything but account lifecycle changes and
    /// token exposures, which concern a user or a token wherever they live).
    pub fn is_session_event(self) -> bool {
        !matches!(self, Self::UserLifecycle | Self::TokenExposed)
    }
}

/// What kind of identity holds a session; lifetime policy differs per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityType {
    /// A person.
    Human,
    /// A service account or workload identity.
    Workload,
    /// An AI agent or other delegated automation acting for someone.
    Agent,
}

impl IdentityType {
    /// Every type.
    pub const ALL: [IdentityType; 3] = [Self::Human, Self::Workload, Self::Agent];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Workload => "workload",
            Self::Agent => "agent",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// An account change after which none of the user's sessions may live on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleChange {
    /// The account was deactivated.
    Deactivated,
    /// The account was suspended.
    Suspended,
    /// The account was deleted.
    Deleted,
    /// The password was reset by an administrator or the user.
    PasswordReset,
    /// The MFA factors were reset.
    MfaReset,
    /// Other credentials changed (password changed, factor removed, keys rotated).
    CredentialsChanged,
}

impl LifecycleChange {
    /// Every change.
    pub const ALL: [LifecycleChange; 6] = [
        Self::Deactivated,
        Self::Suspended,
        Self::Deleted,
        Self::PasswordReset,
        Self::MfaReset,
        Self::CredentialsChanged,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deactivated => "deactivated",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
            Self::PasswordReset => "password_reset",
            Self::MfaReset => "mfa_reset",
            Self::CredentialsChanged => "credentials_changed",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The input format a record came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// Vigil's own schema, `schemas/session-event.v1.json`.
    Native,
    /// Okta System Log `LogEvent`.
    Okta,
    /// Microsoft Entra ID sign-in log, as Azure Monitor or Graph exports it.
    Entra,
    /// OCSF 1.x Authentication (3002) or API Activity (6003).
    Ocsf,
}

impl SourceFormat {
    /// Lower-case name used in CLI flags, metrics and outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Okta => "okta",
            Self::Entra => "entra",
            Self::Ocsf => "ocsf",
        }
    }
}

/// Where the client was, as the source reported it or as GeoIP enrichment found it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Geo {
    /// Country: an ISO 3166 alpha-2 code where known, else the source's name for it.
    pub country: Option<String>,
    /// City name.
    pub city: Option<String>,
    /// Latitude in degrees.
    pub lat: Option<f64>,
    /// Longitude in degrees.
    pub lon: Option<f64>,
    /// Radius in km within which the true location lies (MaxMind `accuracy_radius`).
    pub accuracy_km: Option<u32>,
    /// Autonomous system number of the client IP.
    pub asn: Option<u32>,
    /// Organisation owning the autonomous system.
    pub as_org: Option<String>,
    /// Whether the source flagged the IP as an anonymizing proxy.
    pub is_proxy: Option<bool>,
}

impl Geo {
    /// Latitude and longitude when both are known and in range.
    pub fn coordinates(&self) -> Option<(f64, f64)> {
        match (self.lat, self.lon) {
            // (0, 0) is a placeholder some exports write for "unknown", not a place.
            (Some(lat), Some(lon))
                if lat.is_finite()
                    && lon.is_finite()
                    && (-90.0..=90.0).contains(&lat)
                    && (-180.0..=180.0).contains(&lon)
                    && !(lat == 0.0 && lon == 0.0) =>
            {
                Some((lat, lon))
            }
            _ => None,
        }
    }

    /// Whether nothing locating the client is known yet.
    pub fn is_empty(&self) -> bool {
        self.country.is_none() && self.coordinates().is_none() && self.asn.is_none()
    }
}

/// One post-authentication event, normalized from any input format.
///
/// Secrets never reach this type: tokens are present only as keyed hashes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionEvent {
    /// Event time, epoch milliseconds.
    pub time_ms: i64,
    /// What happened.
    pub kind: EventKind,
    /// Whether the IdP reported success (a denied request still says who tried what).
    pub success: bool,
    /// The session the event belongs to.
    pub session_id: String,
    /// The root session of a chain of derived sessions, where the IdP gives one.
    pub root_session_id: Option<String>,
    /// The session that minted this one (token exchange, delegation), where known.
    pub parent_session_id: Option<String>,
    /// The user (or workload) the session belongs to.
    pub user_id: String,
    /// Tenant or organisation.
    pub tenant: Option<String>,
    /// Client IP address.
    pub ip: Option<IpAddr>,
    /// Raw user-agent string.
    pub user_agent: Option<String>,
    /// Device fingerprint or device id (Okta `dtHash`, Entra `deviceId`).
    pub device_id: Option<String>,
    /// Keyed hash of the access/session token used or issued.
    pub token: Option<TokenHash>,
    /// Keyed hash of the refresh token presented.
    pub refresh_token: Option<TokenHash>,
    /// Keyed hash of the refresh token issued in its place (rotation).
    pub new_refresh_token: Option<TokenHash>,
    /// Scopes granted by this event.
    pub scopes: Vec<String>,
    /// Application or audience.
    pub app: Option<String>,
    /// OAuth client id.
    pub client_id: Option<String>,
    /// Location and network of the client.
    pub geo: Geo,
    /// The input format.
    pub source: SourceFormat,
    /// The id of the source record (Okta `uuid`, Entra `id`, OCSF `metadata.uid`, ...).
    pub source_id: String,
    /// The kind of identity holding the session, when the source says (native
    /// `identity_type`); otherwise the engine's identity rules decide.
    pub identity_type: Option<IdentityType>,
    /// For [`EventKind::UserLifecycle`]: what changed.
    pub lifecycle: Option<LifecycleChange>,
    /// For [`EventKind::TokenExposed`]: where the token was found (a URL, ticket id, repo path).
    pub found_in: Option<String>,
    /// The source's own name for the event (native `event`, Okta `eventType`, OCSF
    /// `activity_name`), matched by governance's `task_end_events`.
    pub event_name: Option<String>,
}

impl SessionEvent {
    /// An event with every field absent or empty: what a parser fills in, and what
    /// [`parse_record_into`](crate::adapters::parse_record_into) reuses the allocations of.
    pub fn empty(source: SourceFormat) -> Self {
        Self {
            time_ms: 0,
            kind: EventKind::Access,
            success: true,
            session_id: String::new(),
            root_session_id: None,
            parent_session_id: None,
            user_id: String::new(),
            tenant: None,
            ip: None,
            user_agent: None,
            device_id: None,
            token: None,
            refresh_token: None,
            new_refresh_token: None,
            scopes: Vec::new(),
            app: None,
            client_id: None,
            geo: Geo::default(),
            source,
            source_id: String::new(),
            identity_type: None,
            lifecycle: None,
            found_in: None,
            event_name: None,
        }
    }
}
