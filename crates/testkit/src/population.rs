//! A generated population: many users over several working days, with the habits that make
//! real IdP traffic noisy (office hours with a lunch break, several apps, token refresh every
//! hour with rotation, a laptop and a phone, a shared office NAT, VPN users, dual-stack IPv6,
//! travellers, browser updates) and attacks of every kind the engine detects injected into a
//! share of user-days, each labelled with its first malicious event.
//!
//! Deterministic: the same seed gives the same traffic.

use std::collections::BTreeMap;

use vigil_model::EventKind;

use crate::places::{self, Place};
use crate::render::{EventSpec, Format};
use crate::samples::{
    CHROME_WIN, CHROME_WIN_121, FIREFOX_LINUX, GenRecord, Label, PYTHON, SAFARI_MAC,
};

/// Safari on an iPhone.
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
/// Monday 2024-05-06 00:00 UTC.
const DAY0: i64 = 1_714_953_600_000;
const MIN: i64 = 60_000;
const DAY: i64 = 1_440 * MIN;
const APPS: [&str; 6] = ["Mail", "Files", "CRM", "Wiki", "HR", "Chat"];

/// The attacks injected, in turn.
pub const ATTACKS: [&str; 10] = [
    "aitm_cookie_replay",
    "infostealer_replay_cloned_ua",
    "impossible_travel",
    "concurrent_use",
    "device_swap",
    "user_agent_swap_to_script",
    "token_replay_other_session",
    "refresh_token_reuse",
    "scope_escalation",
    "session_used_after_logout",
];

/// Population settings.
#[derive(Debug, Clone)]
pub struct PopulationSpec {
    /// Users.
    pub users: usize,
    /// Working days.
    pub days: usize,
    /// Share of user-days with an injected attack (0..1).
    pub attack_rate: f64,
    /// Seed.
    pub seed: u64,
}

/// SplitMix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

struct User {
    id: String,
    home: Place,
    office: Place,
    laptop_ua: &'static str,
    laptop: String,
    phone: String,
    apps: Vec<&'static str>,
    vpn: bool,
    ipv6: bool,
    traveller: bool,
    updates_browser: bool,
    format: Format,
    /// Tethers the laptop to a phone now and then during the day.
    tethers: bool,
}

struct Gen {
    events: Vec<EventSpec>,
    labels: BTreeMap<String, (Label, Format)>,
    seq: u64,
}

impl Gen {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        u: &User,
        session: &str,
        t: i64,
        kind: EventKind,
        place: Place,
        ua: &str,
        device: Option<&str>,
        app: &str,
    ) -> &mut EventSpec {
        self.seq += 1;
        self.events.push(EventSpec {
            id: format!("p-{:07}", self.seq),
            time_ms: t,
            kind,
            session_id: session.into(),
            user_id: u.id.clone(),
            tenant: "acme".into(),
            place,
            ip: None,
            user_agent: ua.into(),
            device_id: device.map(Into::into),
            token_id: None,
            refresh_token_id: None,
            new_refresh_token_id: None,
            scopes: Vec::new(),
            app: app.into(),
            with_geo: u.format != Format::Native,
        });
        self.events.last_mut().expect("just pushed")
    }

    fn label(
        &mut self,
        session: &str,
        class: &'static str,
        name: &'static str,
        revoke: bool,
        first: Option<String>,
        format: Format,
    ) {
        self.labels.insert(
            session.into(),
            (
                Label {
                    class,
                    name,
                    revoke,
                    first_malicious: first,
                },
                format,
            ),
        );
    }
}

/// Which attacks a format can express (Entra sign-in logs carry no logouts, refresh-token
/// ids or granted scopes; OCSF no refresh-token ids or scopes).
fn expressible(format: Format, attack: &str) -> bool {
    match format {
        Format::Entra => !matches!(
            attack,
            "refresh_token_reuse" | "session_used_after_logout" | "scope_escalation"
        ),
        Format::Ocsf => !matches!(attack, "refresh_token_reuse" | "scope_escalation"),
        _ => true,
    }
}

/// Generates the population's traffic in time order, rendered round-robin per user over
/// `formats`, with every session's label.
pub fn generate(
    spec: &PopulationSpec,
    formats: &[Format],
) -> (Vec<GenRecord>, BTreeMap<String, Label>) {
    let mut rng = Rng(spec.seed);
    let homes = [
        places::LONDON_BT,
        places::BERLIN_DT,
        places::NEW_YORK_VZ,
        places::SAO_PAULO_VIVO,
    ];
    let uas = [CHROME_WIN, SAFARI_MAC, FIREFOX_LINUX];
    let users: Vec<User> = (0..spec.users)
        .map(|i| {
            let home = homes[i % homes.len()];
            let office = if home.city == "London" && rng.chance(0.6) {
                places::LONDON_CORP_NAT
            } else {
                home
            };
            let mut apps: Vec<&'static str> = APPS.to_vec();
            let keep = 2 + rng.below(3) as usize;
            while apps.len() > keep {
                apps.remove(rng.below(apps.len() as u64) as usize);
            }
            User {
                id: format!("pu{i:05}"),
                home,
                office,
                laptop_ua: uas[rng.below(3) as usize],
                laptop: format!("dev-pu{i:05}-laptop"),
                phone: format!("dev-pu{i:05}-phone"),
                apps,
                vpn: rng.chance(0.1),
                ipv6: office == places::LONDON_BT && rng.chance(0.3),
                traveller: home.city == "London" && rng.chance(0.1),
                updates_browser: rng.chance(0.1),
                format: formats[i % formats.len().max(1)],
                tethers: matches!(home.city, "London" | "Berlin") && rng.chance(0.1),
            }
        })
        .collect();
    let mut g = Gen {
        events: Vec::new(),
        labels: BTreeMap::new(),
        seq: 0,
    };
    let mut attack_turn = 0usize;
    for day in 0..spec.days {
        let d0 = DAY0 + (day as i64 + 2 * (day as i64 / 5)) * DAY; // weekdays only
        for u in &users {
            let attack = if rng.chance(spec.attack_rate) {
                let mut a = ATTACKS[attack_turn % ATTACKS.len()];
                attack_turn += 1;
                while !expressible(u.format, a) {
                    a = ATTACKS[attack_turn % ATTACKS.len()];
                    attack_turn += 1;
                }
                Some(a)
            } else {
                None
            };
            workday(&mut g, &mut rng, u, day, d0, attack);
            if rng.chance(0.3) {
                evening_phone(&mut g, &mut rng, u, day, d0);
            }
        }
    }
    g.events.sort_by_key(|e| e.time_ms);
    let mut labels = BTreeMap::new();
    let mut out = Vec::with_capacity(g.events.len());
    for (s, (l, _)) in &g.labels {
        labels.insert(s.clone(), l.clone());
    }
    for e in g.events {
        let Some((_, format)) = g.labels.get(&e.session_id) else {
            continue;
        };
        if !format.supports(e.kind) {
            continue;
        }
        out.push(GenRecord {
            session_id: e.session_id.clone(),
            user_id: e.user_id.clone(),
            source_id: e.id.clone(),
            line: e.render(*format).to_string(),
        });
    }
    (out, labels)
}

fn workday(
    g: &mut Gen,
    rng: &mut Rng,
    u: &User,
    day: usize,
    d0: i64,
    attack: Option<&'static str>,
) {
    let s = format!("{}-d{day}", u.id);
    let start = d0 + (8 * 60 + rng.below(90) as i64) * MIN;
    let end = d0 + (17 * 60 + rng.below(90) as i64) * MIN;
    let lunch = d0 + (12 * 60 + rng.below(30) as i64) * MIN;
    let mut place = if u.traveller && day % 5 == 3 {
        places::NEW_YORK_VZ
    } else {
        u.office
    };
    let base = place;
    let ua = if u.updates_browser && day >= 2 && u.laptop_ua == CHROME_WIN {
        CHROME_WIN_121
    } else {
        u.laptop_ua
    };
    let dev = u.laptop.as_str();
    let app0 = u.apps[0];
    g.push(
        u,
        &s,
        start,
        EventKind::SessionStart,
        place,
        ua,
        Some(dev),
        app0,
    );
    let jti = |n: u32| format!("at-{s}-{n}");
    let rt = |n: u32| format!("rt-{s}-{n}");
    let e = g.push(
        u,
        &s,
        start + 5_000,
        EventKind::TokenIssued,
        place,
        ua,
        Some(dev),
        app0,
    );
    e.token_id = Some(jti(0));
    e.new_refresh_token_id = Some(rt(0));
    e.scopes = vec!["openid".into(), "profile".into(), "mail.read".into()];
    let (mut t, mut n, mut last_refresh) = (start, 0u32, start);
    let attack_at = start + (end - start) / 2;
    let mut attacked = false;
    while t < end {
        t += (10 + rng.below(30) as i64) * MIN;
        if t > lunch && t < lunch + 60 * MIN {
            t = lunch + 60 * MIN;
        }
        if t >= end {
            break;
        }
        let before = place;
        if u.vpn && rng.chance(0.2) {
            place = if place.asn == places::FRANKFURT_ZSCALER.asn {
                base
            } else {
                places::FRANKFURT_ZSCALER
            };
        } else if u.tethers && base == u.office && rng.chance(0.2) {
            let carrier = if u.home.country == "DE" {
                places::DUSSELDORF_VODAFONE_MOBILE
            } else {
                places::MANCHESTER_EE_MOBILE
            };
            place = if place == carrier { base } else { carrier };
        } else if u.ipv6 && base == u.office && rng.chance(0.3) {
            place = if place == places::LONDON_BT_V6 {
                places::LONDON_BT
            } else {
                places::LONDON_BT_V6
            };
        }
        if place != before {
            // Work goes on through a network change: a request on the old network moments
            // before the first on the new one.
            let app = u.apps[rng.below(u.apps.len() as u64) as usize];
            let e = g.push(
                u,
                &s,
                t - 90_000,
                EventKind::Access,
                before,
                ua,
                Some(dev),
                app,
            );
            e.token_id = Some(jti(n));
        }
        if t - last_refresh >= 60 * MIN {
            n += 1;
            last_refresh = t;
            let e = g.push(
                u,
                &s,
                t,
                EventKind::TokenRefreshed,
                place,
                ua,
                Some(dev),
                app0,
            );
            e.refresh_token_id = Some(rt(n - 1));
            e.new_refresh_token_id = Some(rt(n));
            e.token_id = Some(jti(n));
        }
        let app = u.apps[rng.below(u.apps.len() as u64) as usize];
        let e = g.push(
            u,
            &s,
            t + 1_000,
            EventKind::Access,
            place,
            ua,
            Some(dev),
            app,
        );
        e.token_id = Some(jti(n));
        if let (Some(a), false) = (attack, attacked)
            && t >= attack_at
        {
            attacked = true;
            inject(g, u, &s, t + 2 * MIN, a, place, ua, &jti(n), &rt(0), n);
        }
    }
    let e = g.push(u, &s, end, EventKind::Logout, place, ua, Some(dev), app0);
    e.token_id = Some(jti(n));
    match attack {
        Some("session_used_after_logout") => {
            let e = g.push(
                u,
                &s,
                end + 10 * MIN,
                EventKind::Access,
                places::AMSTERDAM_DO,
                ua,
                None,
                app0,
            );
            let id = e.id.clone();
            g.label(
                &s,
                "attack",
                "session_used_after_logout",
                true,
                Some(id),
                u.format,
            );
        }
        Some(_) if g.labels.contains_key(&s) => {}
        _ => {
            let trap = if u.traveller && day % 5 == 3 {
                "real_travel_after_hours"
            } else if u.vpn {
                "vpn_change"
            } else if u.tethers {
                "laptop_tethering"
            } else if u.ipv6 {
                "ipv4_ipv6_switch"
            } else if u.updates_browser {
                "browser_update"
            } else if u.office.asn == places::LONDON_CORP_NAT.asn {
                "shared_corporate_nat"
            } else {
                "normal"
            };
            g.label(&s, "benign", trap, false, None, u.format);
        }
    }
}

/// The attacker's first step(s), `t` into the victim's day at `place`.
#[allow(clippy::too_many_arguments)]
fn inject(
    g: &mut Gen,
    u: &User,
    s: &str,
    t: i64,
    attack: &'static str,
    place: Place,
    ua: &str,
    jti: &str,
    old_rt: &str,
    n: u32,
) {
    let app = u.apps[0];
    let far = if u.home.city == "New York" {
        places::LONDON_BT
    } else {
        places::NEW_YORK_VZ
    };
    let first = match attack {
        "aitm_cookie_replay" => g
            .push(
                u,
                s,
                t,
                EventKind::Access,
                places::AMSTERDAM_DO,
                FIREFOX_LINUX,
                Some("dev-evilginx"),
                app,
            )
            .id
            .clone(),
        "infostealer_replay_cloned_ua" => g
            .push(
                u,
                s,
                t,
                EventKind::Access,
                places::SINGAPORE_AWS,
                ua,
                None,
                app,
            )
            .id
            .clone(),
        "impossible_travel" => g
            .push(u, s, t, EventKind::Access, far, ua, Some(&u.laptop), app)
            .id
            .clone(),
        "concurrent_use" => {
            let other = if place.city == "Berlin" {
                places::HAMBURG_DT
            } else {
                far
            };
            let id = g
                .push(u, s, t, EventKind::Access, other, ua, None, app)
                .id
                .clone();
            g.push(
                u,
                s,
                t + 2 * MIN,
                EventKind::Access,
                place,
                ua,
                Some(&u.laptop),
                app,
            );
            g.push(u, s, t + 4 * MIN, EventKind::Access, other, ua, None, app);
            id
        }
        "device_swap" => {
            let other = if ua == SAFARI_MAC {
                CHROME_WIN
            } else {
                SAFARI_MAC
            };
            g.push(
                u,
                s,
                t,
                EventKind::Access,
                place,
                other,
                Some("dev-stolen-copy"),
                app,
            )
            .id
            .clone()
        }
        "user_agent_swap_to_script" => g
            .push(u, s, t, EventKind::Access, place, PYTHON, None, app)
            .id
            .clone(),
        "token_replay_other_session" => {
            let thief = format!("{s}-thief");
            let e = g.push(
                u,
                &thief,
                t,
                EventKind::Access,
                places::SINGAPORE_AWS,
                PYTHON,
                None,
                app,
            );
            e.token_id = Some(jti.into());
            let id = e.id.clone();
            g.label(&thief, "attack", attack, true, Some(id), u.format);
            return;
        }
        "refresh_token_reuse" => {
            if n == 0 {
                // Nothing rotated yet: rotate once so the old token is retired.
                let e = g.push(
                    u,
                    s,
                    t - MIN,
                    EventKind::TokenRefreshed,
                    place,
                    ua,
                    Some(&u.laptop),
                    app,
                );
                e.refresh_token_id = Some(old_rt.into());
                e.new_refresh_token_id = Some(format!("{old_rt}-r"));
            }
            let e = g.push(
                u,
                s,
                t,
                EventKind::TokenRefreshed,
                places::SINGAPORE_AWS,
                PYTHON,
                None,
                app,
            );
            e.refresh_token_id = Some(old_rt.into());
            e.new_refresh_token_id = Some(format!("{old_rt}-x"));
            e.id.clone()
        }
        "scope_escalation" => {
            let e = g.push(
                u,
                s,
                t,
                EventKind::TokenIssued,
                place,
                ua,
                Some(&u.laptop),
                app,
            );
            e.scopes = vec![
                "Directory.ReadWrite.All".into(),
                "Mail.ReadWrite".into(),
                "offline_access".into(),
            ];
            let id = e.id.clone();
            g.label(s, "attack", attack, false, Some(id), u.format);
            return;
        }
        // Injected at logout instead.
        _ => return,
    };
    g.label(s, "attack", attack, true, Some(first), u.format);
}

fn evening_phone(g: &mut Gen, rng: &mut Rng, u: &User, day: usize, d0: i64) {
    let s = format!("{}-d{day}-phone", u.id);
    let home = if u.home.city == "Berlin" && rng.chance(0.5) {
        places::BERLIN_O2
    } else {
        u.home
    };
    let start = d0 + (19 * 60 + rng.below(120) as i64) * MIN;
    g.push(
        u,
        &s,
        start,
        EventKind::SessionStart,
        home,
        IPHONE,
        Some(&u.phone),
        "Mail",
    );
    for k in 1..=(1 + rng.below(4)) {
        g.push(
            u,
            &s,
            start + k as i64 * 7 * MIN,
            EventKind::Access,
            home,
            IPHONE,
            Some(&u.phone),
            "Chat",
        );
    }
    g.label(&s, "benign", "mobile_evening", false, None, u.format);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn population_is_deterministic_labelled_and_covers_every_attack() {
        let spec = PopulationSpec {
            users: 40,
            days: 6,
            attack_rate: 0.2,
            seed: 7,
        };
        let (a, la) = generate(&spec, &[Format::Native, Format::Okta]);
        let (b, lb) = generate(&spec, &[Format::Native, Format::Okta]);
        assert_eq!(a.len(), b.len());
        assert_eq!(la, lb, "same seed, same traffic");
        let attacks: std::collections::BTreeSet<&str> = la
            .values()
            .filter(|l| l.class == "attack")
            .map(|l| l.name)
            .collect();
        assert_eq!(attacks.len(), ATTACKS.len(), "{attacks:?}");
        // Every attack names its first malicious event, and that event is in the traffic.
        let ids: std::collections::BTreeSet<&str> =
            a.iter().map(|r| r.source_id.as_str()).collect();
        for (s, l) in &la {
            if l.class == "attack" {
                let first = l.first_malicious.as_deref().expect("first malicious event");
                assert!(ids.contains(first), "{s}: {first} not generated");
            }
        }
        let traps: std::collections::BTreeSet<&str> = la
            .values()
            .filter(|l| l.class == "benign")
            .map(|l| l.name)
            .collect();
        for t in [
            "vpn_change",
            "laptop_tethering",
            "mobile_evening",
            "shared_corporate_nat",
            "normal",
        ] {
            assert!(traps.contains(t), "{t} missing from {traps:?}");
        }
        // Time order (the native rendering carries `time` as RFC 3339, which sorts).
        let (n, _) = generate(&spec, &[Format::Native]);
        let times: Vec<String> = n
            .iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(&r.line).expect("json")["time"]
                    .as_str()
                    .expect("time")
                    .to_owned()
            })
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }
}
