//! Renders one abstract event into each input format: Vigil native, Okta System Log, Entra
//! sign-in log (Azure Monitor export) and OCSF. Tests and the traffic generator write the same
//! story in every dialect, so each adapter is tested on the same attacks.

use serde_json::{Map, Value, json};
use vigil_model::EventKind;
use vigil_model::time::format_rfc3339;

use crate::places::Place;

/// One event, before it is written in a vendor's format. Token fields hold identifiers
/// (such as a `jti`), never bearer values.
#[derive(Debug, Clone)]
pub struct EventSpec {
    /// Source record id.
    pub id: String,
    /// Event time, epoch ms.
    pub time_ms: i64,
    /// What happened.
    pub kind: EventKind,
    /// Session id.
    pub session_id: String,
    /// User id.
    pub user_id: String,
    /// Tenant.
    pub tenant: String,
    /// Where the client was.
    pub place: Place,
    /// Client IP (defaults to the place's).
    pub ip: Option<String>,
    /// User agent.
    pub user_agent: String,
    /// Device fingerprint.
    pub device_id: Option<String>,
    /// Access/session token identifier.
    pub token_id: Option<String>,
    /// Refresh token presented.
    pub refresh_token_id: Option<String>,
    /// Refresh token issued.
    pub new_refresh_token_id: Option<String>,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// Application.
    pub app: String,
    /// Whether the source states the location itself (else GeoIP must supply it).
    pub with_geo: bool,
}

/// The four formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Vigil native.
    Native,
    /// Okta System Log.
    Okta,
    /// Entra sign-in log.
    Entra,
    /// OCSF.
    Ocsf,
}

impl Format {
    /// All formats.
    pub const ALL: [Format; 4] = [Format::Native, Format::Okta, Format::Entra, Format::Ocsf];

    /// The format's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Okta => "okta",
            Self::Entra => "entra",
            Self::Ocsf => "ocsf",
        }
    }

    /// Whether the format can express an event of this kind.
    pub fn supports(self, kind: EventKind) -> bool {
        // Entra sign-in logs record token issuance only; sign-outs are in audit logs. The
        // story renders account changes and token exposures in the native schema only.
        !(self == Self::Entra && kind.ends_session())
            && (kind.is_session_event() || self == Self::Native)
    }
}

impl EventSpec {
    fn ip(&self) -> &str {
        self.ip.as_deref().unwrap_or(self.place.ip)
    }

    /// Renders the event in `format`.
    pub fn render(&self, format: Format) -> Value {
        match format {
            Format::Native => self.native(),
            Format::Okta => self.okta(),
            Format::Entra => self.entra(),
            Format::Ocsf => self.ocsf(),
        }
    }

    fn native(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("time".into(), json!(format_rfc3339(self.time_ms)));
        m.insert("kind".into(), json!(self.kind.as_str()));
        m.insert("session_id".into(), json!(self.session_id));
        m.insert("user_id".into(), json!(self.user_id));
        m.insert("tenant".into(), json!(self.tenant));
        m.insert("ip".into(), json!(self.ip()));
        m.insert("user_agent".into(), json!(self.user_agent));
        m.insert("app".into(), json!(self.app));
        if let Some(d) = &self.device_id {
            m.insert("device_id".into(), json!(d));
        }
        for (k, v) in [
            ("token_id", &self.token_id),
            ("refresh_token_id", &self.refresh_token_id),
            ("new_refresh_token_id", &self.new_refresh_token_id),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), json!(v));
            }
        }
        if !self.scopes.is_empty() {
            m.insert("scopes".into(), json!(self.scopes));
        }
        if self.with_geo {
            let p = &self.place;
            m.insert(
                "geo".into(),
                json!({"country": p.country, "city": p.city, "lat": p.lat, "lon": p.lon}),
            );
            m.insert("asn".into(), json!(p.asn));
            m.insert("as_org".into(), json!(p.as_org));
        }
        Value::Object(m)
    }

    fn okta(&self) -> Value {
        let event_type = match self.kind {
            EventKind::SessionStart => "user.session.start",
            EventKind::Logout => "user.session.end",
            EventKind::Revocation => "user.session.clear",
            EventKind::Mfa => "user.authentication.auth_via_mfa",
            EventKind::Access => "user.authentication.sso",
            EventKind::TokenIssued | EventKind::TokenRefreshed => {
                "app.oauth2.as.token.grant.access_token"
            }
            // Not rendered in this format (see `Format::supports`).
            EventKind::UserLifecycle => "user.lifecycle.deactivate",
            EventKind::TokenExposed => "security.threat.detected",
        };
        let mut targets = vec![json!({
            "id": "0oa1app", "type": "AppInstance", "alternateId": self.app, "displayName": self.app
        })];
        if let Some(t) = &self.token_id {
            targets.push(json!({"id": t, "type": "access_token", "alternateId": "access_token", "displayName": "Access Token"}));
        }
        let presented = if self.kind == EventKind::TokenRefreshed {
            &self.refresh_token_id
        } else {
            &self.new_refresh_token_id
        };
        if let Some(t) = presented {
            targets.push(json!({"id": t, "type": "refresh_token", "alternateId": "refresh_token", "displayName": "Refresh Token"}));
        }
        let mut debug = Map::new();
        debug.insert("requestId".into(), json!(format!("req-{}", self.id)));
        if let Some(d) = &self.device_id {
            debug.insert("deviceFingerprint".into(), json!(d));
        }
        if !self.scopes.is_empty() {
            debug.insert("grantedScopes".into(), json!(self.scopes.join(" ")));
        }
        if self.kind == EventKind::TokenRefreshed {
            debug.insert("grantType".into(), json!("refresh_token"));
            if let Some(n) = &self.new_refresh_token_id {
                debug.insert("rotatedRefreshTokenId".into(), json!(n));
            }
        } else if matches!(self.kind, EventKind::TokenIssued) {
            debug.insert("grantType".into(), json!("authorization_code"));
        }
        let p = &self.place;
        let geo = if self.with_geo {
            json!({"city": p.city, "state": null, "country": p.country_name, "postalCode": null,
                   "geolocation": {"lat": p.lat, "lon": p.lon}})
        } else {
            Value::Null
        };
        json!({
            "uuid": self.id,
            "published": format_rfc3339(self.time_ms),
            "eventType": event_type,
            "version": "0",
            "severity": "INFO",
            "displayMessage": event_type,
            "actor": {"id": self.user_id, "type": "User", "alternateId": format!("{}@example.com", self.user_id), "displayName": self.user_id},
            "client": {
                "userAgent": {"rawUserAgent": self.user_agent, "os": null, "browser": null},
                "zone": "null", "device": "Computer", "id": null,
                "ipAddress": self.ip(),
                "geographicalContext": geo,
            },
            "authenticationContext": {"externalSessionId": self.session_id, "authenticationStep": 0},
            "outcome": {"result": "SUCCESS", "reason": null},
            "securityContext": if self.with_geo {
                json!({"asNumber": p.asn, "asOrg": p.as_org, "isp": p.as_org, "domain": null, "isProxy": false})
            } else {
                json!({"asNumber": null, "asOrg": null, "isp": null, "domain": null, "isProxy": null})
            },
            "debugContext": {"debugData": Value::Object(debug)},
            "transaction": {"type": "WEB", "id": format!("tx-{}", self.id), "detail": {}},
            "target": targets,
        })
    }

    fn entra(&self) -> Value {
        let (category, interactive, incoming) = match self.kind {
            EventKind::SessionStart => ("SignInLogs", true, "none"),
            EventKind::TokenRefreshed => ("NonInteractiveUserSignInLogs", false, "refreshToken"),
            _ => ("NonInteractiveUserSignInLogs", false, "primaryRefreshToken"),
        };
        let p = &self.place;
        let location = if self.with_geo {
            json!({"city": p.city, "state": null, "countryOrRegion": p.country,
                   "geoCoordinates": {"latitude": p.lat, "longitude": p.lon}})
        } else {
            json!({})
        };
        json!({
            "time": format_rfc3339(self.time_ms),
            "resourceId": format!("/tenants/{}/providers/Microsoft.aadiam", self.tenant),
            "operationName": "Sign-in activity",
            "operationVersion": "1.0",
            "category": category,
            "tenantId": self.tenant,
            "resultType": "0",
            "resultSignature": "None",
            "durationMs": 0,
            "callerIpAddress": self.ip(),
            "correlationId": format!("corr-{}", self.id),
            "identity": self.user_id,
            "Level": 4,
            "location": if self.with_geo { json!(p.country) } else { Value::Null },
            "properties": {
                "id": self.id,
                "createdDateTime": format_rfc3339(self.time_ms),
                "userDisplayName": self.user_id,
                "userPrincipalName": format!("{}@example.com", self.user_id),
                "userId": self.user_id,
                "appId": "00000002-0000-0ff1-ce00-000000000000",
                "appDisplayName": self.app,
                "resourceDisplayName": self.app,
                "ipAddress": self.ip(),
                "status": {"errorCode": 0},
                "clientAppUsed": "Browser",
                "userAgent": self.user_agent,
                "deviceDetail": {"deviceId": self.device_id.clone().unwrap_or_default(), "operatingSystem": "", "browser": ""},
                "location": location,
                "correlationId": format!("corr-{}", self.id),
                "sessionId": self.session_id,
                "uniqueTokenIdentifier": self.token_id,
                "incomingTokenType": incoming,
                "isInteractive": interactive,
                "autonomousSystemNumber": if self.with_geo { json!(p.asn) } else { Value::Null },
                "tokenIssuerType": "AzureAD",
            }
        })
    }

    fn ocsf(&self) -> Value {
        let p = &self.place;
        let mut src = Map::new();
        src.insert("ip".into(), json!(self.ip()));
        if self.with_geo {
            src.insert(
                "location".into(),
                json!({"city": p.city, "country": p.country, "lat": p.lat, "long": p.lon}),
            );
            src.insert(
                "autonomous_system".into(),
                json!({"number": p.asn, "name": p.as_org}),
            );
        }
        let mut session = Map::new();
        session.insert("uid".into(), json!(self.session_id));
        if let Some(t) = &self.token_id {
            session.insert("credential_uid".into(), json!(t));
        }
        let metadata = json!({"uid": self.id, "version": "1.3.0", "tenant_uid": self.tenant,
                              "product": {"name": "Test IdP", "vendor_name": "Example"}});
        let device = self
            .device_id
            .as_ref()
            .map(|d| json!({"uid": d, "type_id": 0}));
        let time = self.time_ms;
        match self.kind {
            EventKind::Access => json!({
                "class_uid": 6003, "category_uid": 6, "activity_id": 2, "type_uid": 600302,
                "time": time, "severity_id": 1, "status_id": 1, "metadata": metadata,
                "actor": {"user": {"uid": self.user_id}, "session": Value::Object(session)},
                "api": {"operation": "GET", "service": {"name": self.app}},
                "src_endpoint": Value::Object(src),
                "http_request": {"user_agent": self.user_agent},
                "device": device,
            }),
            kind => {
                let activity = match kind {
                    EventKind::SessionStart => 1,
                    EventKind::Logout | EventKind::Revocation => 2,
                    EventKind::TokenIssued | EventKind::TokenRefreshed => 3,
                    _ => 99,
                };
                json!({
                    "class_uid": 3002, "category_uid": 3, "activity_id": activity,
                    "type_uid": 300200 + activity, "time": time, "severity_id": 1, "status_id": 1,
                    "metadata": metadata, "user": {"uid": self.user_id},
                    "session": Value::Object(session),
                    "service": {"name": self.app},
                    "src_endpoint": Value::Object(src),
                    "http_request": {"user_agent": self.user_agent},
                    "device": device,
                })
            }
        }
    }
}
