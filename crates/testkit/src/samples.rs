//! The sample story: a day of IdP traffic with benign traps and injected attacks, labelled,
//! renderable in every input format. It is what `tests/data/samples/` holds and what the
//! end-to-end replay tests check.

use std::collections::BTreeMap;

use serde::Serialize;
use vigil_model::EventKind;

use crate::places::{self, Place};
use crate::render::{EventSpec, Format};

/// Chrome 120 on Windows.
pub const CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
/// Chrome 121 on Windows (a version bump of [`CHROME_WIN`]).
pub const CHROME_WIN_121: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.6167.85 Safari/537.36";
/// Safari on macOS.
pub const SAFARI_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15";
/// Firefox on Linux.
pub const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
/// A scripting client.
pub const PYTHON: &str = "python-requests/2.31.0";

/// What a session in the story is.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Label {
    /// `attack` or `benign`.
    pub class: &'static str,
    /// The attack or trap name.
    pub name: &'static str,
    /// Whether Vigil must revoke it (attacks) — step-up-only attacks are alerted, not revoked.
    pub revoke: bool,
    /// For attacks: the source id of the first malicious event, from which detection delay
    /// is measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_malicious: Option<String>,
}

/// Each session's label and the formats that can express it.
pub type Labels = BTreeMap<String, (Label, Vec<Format>)>;

/// 2024-05-01T08:00:00Z.
const T0: i64 = 1_714_550_400_000;
const MIN: i64 = 60_000;

struct Story {
    events: Vec<EventSpec>,
    labels: Labels,
    seq: u32,
}

struct Ev<'a> {
    session: &'a str,
    user: &'a str,
    at_min: i64,
    kind: EventKind,
    place: Place,
    ua: &'a str,
    device: Option<&'a str>,
}

impl Story {
    fn push(&mut self, e: Ev<'_>) -> &mut EventSpec {
        self.seq += 1;
        self.events.push(EventSpec {
            id: format!("evt-{:04}", self.seq),
            time_ms: T0 + e.at_min * MIN,
            kind: e.kind,
            session_id: e.session.into(),
            user_id: e.user.into(),
            tenant: "acme".into(),
            place: e.place,
            ip: None,
            user_agent: e.ua.into(),
            device_id: e.device.map(Into::into),
            token_id: None,
            refresh_token_id: None,
            new_refresh_token_id: None,
            scopes: Vec::new(),
            app: "Mail".into(),
            with_geo: true,
        });
        self.events.last_mut().expect("just pushed")
    }

    /// A plain working session: start, then accesses every `every` minutes.
    #[allow(clippy::too_many_arguments)]
    fn workday(
        &mut self,
        session: &str,
        user: &str,
        start: i64,
        n: i64,
        every: i64,
        place: Place,
        ua: &str,
        device: &str,
    ) {
        self.push(Ev {
            session,
            user,
            at_min: start,
            kind: EventKind::SessionStart,
            place,
            ua,
            device: Some(device),
        });
        for i in 1..=n {
            self.push(Ev {
                session,
                user,
                at_min: start + i * every,
                kind: EventKind::Access,
                place,
                ua,
                device: Some(device),
            });
        }
    }

    fn label(
        &mut self,
        session: &str,
        class: &'static str,
        name: &'static str,
        revoke: bool,
        formats: &[Format],
    ) {
        // In the story an attack's malicious step is the last event of its session so far
        // (concurrent use overrides it).
        let first_malicious = (class == "attack")
            .then(|| {
                self.events
                    .iter()
                    .rev()
                    .find(|e| e.session_id == session)
                    .map(|e| e.id.clone())
            })
            .flatten();
        self.labels.insert(
            session.into(),
            (
                Label {
                    class,
                    name,
                    revoke,
                    first_malicious,
                },
                formats.to_vec(),
            ),
        );
    }
}

/// The story's events in time order, and each session's label with the formats that can
/// express it.
pub fn story() -> (Vec<EventSpec>, Labels) {
    use places::*;
    let all = Format::ALL;
    let mut s = Story {
        events: Vec::new(),
        labels: BTreeMap::new(),
        seq: 0,
    };

    // Benign traffic and traps.
    s.workday(
        "b-normal-1",
        "erin",
        0,
        8,
        15,
        LONDON_BT,
        CHROME_WIN,
        "dt-erin",
    );
    s.label("b-normal-1", "benign", "normal", false, &all);
    s.workday(
        "b-normal-2",
        "frank",
        10,
        8,
        12,
        BERLIN_DT,
        FIREFOX_LINUX,
        "dt-frank",
    );
    s.label("b-normal-2", "benign", "normal", false, &all);

    s.workday("b-vpn", "gina", 0, 2, 5, LONDON_BT, CHROME_WIN, "dt-gina");
    s.workday(
        "b-vpn",
        "gina",
        15,
        3,
        5,
        FRANKFURT_ZSCALER,
        CHROME_WIN,
        "dt-gina",
    );
    s.label("b-vpn", "benign", "vpn_change", false, &all);

    s.workday(
        "b-travel", "hank", 0, 2, 10, LONDON_BT, SAFARI_MAC, "dt-hank",
    );
    s.workday(
        "b-travel",
        "hank",
        540,
        2,
        10,
        NEW_YORK_VZ,
        SAFARI_MAC,
        "dt-hank",
    );
    s.label("b-travel", "benign", "real_travel_after_hours", false, &all);

    for (i, p) in [BERLIN_DT, BERLIN_O2, BERLIN_DT, BERLIN_O2, BERLIN_DT]
        .into_iter()
        .enumerate()
    {
        let kind = if i == 0 {
            EventKind::SessionStart
        } else {
            EventKind::Access
        };
        s.push(Ev {
            session: "b-mobile",
            user: "ivan",
            at_min: 30 + 2 * i as i64,
            kind,
            place: p,
            ua: CHROME_WIN,
            device: Some("dt-ivan"),
        });
    }
    s.label("b-mobile", "benign", "mobile_churn", false, &all);

    s.workday(
        "b-update", "judy", 60, 2, 20, LONDON_BT, CHROME_WIN, "dt-judy",
    );
    s.workday(
        "b-update",
        "judy",
        130,
        2,
        20,
        LONDON_BT,
        CHROME_WIN_121,
        "dt-judy",
    );
    s.label("b-update", "benign", "browser_update", false, &all);

    for (i, p) in [LONDON_BT, LONDON_BT_V6, LONDON_BT, LONDON_BT_V6]
        .into_iter()
        .enumerate()
    {
        let kind = if i == 0 {
            EventKind::SessionStart
        } else {
            EventKind::Access
        };
        s.push(Ev {
            session: "b-ipv6",
            user: "karl",
            at_min: 90 + i as i64,
            kind,
            place: p,
            ua: CHROME_WIN,
            device: Some("dt-karl"),
        });
    }
    s.label("b-ipv6", "benign", "ipv4_ipv6_switch", false, &all);

    for (sess, user, ua, dev) in [
        ("b-nat-1", "lena", CHROME_WIN, "dt-lena"),
        ("b-nat-2", "mike", SAFARI_MAC, "dt-mike"),
        ("b-nat-3", "nora", FIREFOX_LINUX, "dt-nora"),
    ] {
        s.workday(sess, user, 100, 3, 7, LONDON_CORP_NAT, ua, dev);
        s.label(sess, "benign", "shared_corporate_nat", false, &all);
    }

    let e = s.push(Ev {
        session: "b-refresh",
        user: "olga",
        at_min: 120,
        kind: EventKind::TokenIssued,
        place: LONDON_BT,
        ua: CHROME_WIN,
        device: Some("dt-olga"),
    });
    e.new_refresh_token_id = Some("rt-olga-1".into());
    e.scopes = vec!["openid".into(), "profile".into(), "offline_access".into()];
    let e = s.push(Ev {
        session: "b-refresh",
        user: "olga",
        at_min: 180,
        kind: EventKind::TokenRefreshed,
        place: LONDON_BT,
        ua: CHROME_WIN,
        device: Some("dt-olga"),
    });
    e.refresh_token_id = Some("rt-olga-1".into());
    e.new_refresh_token_id = Some("rt-olga-2".into());
    let e = s.push(Ev {
        session: "b-refresh",
        user: "olga",
        at_min: 180,
        kind: EventKind::TokenRefreshed,
        place: LONDON_BT,
        ua: CHROME_WIN,
        device: Some("dt-olga"),
    });
    e.refresh_token_id = Some("rt-olga-1".into());
    e.new_refresh_token_id = Some("rt-olga-3".into());
    e.time_ms += 3_000;
    s.label(
        "b-refresh",
        "benign",
        "refresh_race",
        false,
        &[Format::Native, Format::Okta],
    );

    let e = s.push(Ev {
        session: "b-tok-owner",
        user: "pete",
        at_min: 200,
        kind: EventKind::TokenIssued,
        place: LONDON_BT,
        ua: CHROME_WIN,
        device: Some("dt-pete"),
    });
    e.token_id = Some("jti-pete-1".into());
    let e = s.push(Ev {
        session: "b-tok-owner",
        user: "pete",
        at_min: 205,
        kind: EventKind::Access,
        place: LONDON_BT,
        ua: CHROME_WIN,
        device: Some("dt-pete"),
    });
    e.token_id = Some("jti-pete-1".into());
    s.label("b-tok-owner", "benign", "token_owner", false, &all);

    // Attacks.
    s.workday(
        "x-aitm", "alice", 240, 2, 3, LONDON_BT, CHROME_WIN, "dt-alice",
    );
    s.push(Ev {
        session: "x-aitm",
        user: "alice",
        at_min: 262,
        kind: EventKind::Access,
        place: AMSTERDAM_DO,
        ua: CHROME_WIN,
        device: Some("dt-evilginx"),
    });
    s.label("x-aitm", "attack", "aitm_cookie_replay", true, &all);

    s.workday(
        "x-stealer",
        "quinn",
        250,
        2,
        5,
        SAO_PAULO_VIVO,
        CHROME_WIN,
        "dt-quinn",
    );
    s.push(Ev {
        session: "x-stealer",
        user: "quinn",
        at_min: 300,
        kind: EventKind::Access,
        place: SINGAPORE_AWS,
        ua: CHROME_WIN,
        device: None,
    });
    s.label(
        "x-stealer",
        "attack",
        "infostealer_replay_cloned_ua",
        true,
        &all,
    );

    s.workday(
        "x-travel", "rita", 260, 1, 5, LONDON_BT, SAFARI_MAC, "dt-rita",
    );
    s.push(Ev {
        session: "x-travel",
        user: "rita",
        at_min: 290,
        kind: EventKind::Access,
        place: NEW_YORK_VZ,
        ua: SAFARI_MAC,
        device: None,
    });
    s.label("x-travel", "attack", "impossible_travel", true, &all);

    for (i, p) in [BERLIN_DT, BERLIN_DT, HAMBURG_DT, BERLIN_DT]
        .into_iter()
        .enumerate()
    {
        let kind = if i == 0 {
            EventKind::SessionStart
        } else {
            EventKind::Access
        };
        s.push(Ev {
            session: "x-concurrent",
            user: "sam",
            at_min: 300 + 2 * i as i64,
            kind,
            place: p,
            ua: FIREFOX_LINUX,
            device: None,
        });
    }
    s.label("x-concurrent", "attack", "concurrent_use", true, &all);
    // The first use from Hamburg while Berlin is live.
    let hamburg = s
        .events
        .iter()
        .filter(|e| e.session_id == "x-concurrent")
        .nth(2)
        .map(|e| e.id.clone());
    if let Some((l, _)) = s.labels.get_mut("x-concurrent") {
        l.first_malicious = hamburg;
    }

    s.workday(
        "x-devswap",
        "tina",
        320,
        2,
        5,
        LONDON_BT,
        CHROME_WIN,
        "dt-tina",
    );
    s.push(Ev {
        session: "x-devswap",
        user: "tina",
        at_min: 340,
        kind: EventKind::Access,
        place: LONDON_BT,
        ua: CHROME_WIN,
        device: Some("dt-other"),
    });
    s.label("x-devswap", "attack", "device_swap", true, &all);

    s.workday(
        "x-script",
        "uma",
        330,
        2,
        5,
        BERLIN_DT,
        FIREFOX_LINUX,
        "dt-uma",
    );
    s.push(Ev {
        session: "x-script",
        user: "uma",
        at_min: 345,
        kind: EventKind::Access,
        place: BERLIN_DT,
        ua: PYTHON,
        device: None,
    });
    s.label(
        "x-script",
        "attack",
        "user_agent_swap_to_script",
        true,
        &all,
    );

    let e = s.push(Ev {
        session: "x-tok-thief",
        user: "pete",
        at_min: 360,
        kind: EventKind::Access,
        place: LONDON_BT,
        ua: CHROME_WIN,
        device: None,
    });
    e.token_id = Some("jti-pete-1".into());
    e.ip = Some("81.2.69.77".into());
    s.label(
        "x-tok-thief",
        "attack",
        "token_replay_other_session",
        true,
        &all,
    );

    let e = s.push(Ev {
        session: "x-logout",
        user: "vera",
        at_min: 370,
        kind: EventKind::SessionStart,
        place: LONDON_BT,
        ua: SAFARI_MAC,
        device: Some("dt-vera"),
    });
    e.token_id = Some("jti-vera-1".into());
    s.push(Ev {
        session: "x-logout",
        user: "vera",
        at_min: 380,
        kind: EventKind::Logout,
        place: LONDON_BT,
        ua: SAFARI_MAC,
        device: Some("dt-vera"),
    });
    let e = s.push(Ev {
        session: "x-logout",
        user: "vera",
        at_min: 395,
        kind: EventKind::Access,
        place: LONDON_BT,
        ua: SAFARI_MAC,
        device: Some("dt-vera"),
    });
    e.token_id = Some("jti-vera-1".into());
    s.label(
        "x-logout",
        "attack",
        "session_used_after_logout",
        true,
        &[Format::Native, Format::Okta, Format::Ocsf],
    );

    let e = s.push(Ev {
        session: "x-refresh",
        user: "walt",
        at_min: 400,
        kind: EventKind::TokenIssued,
        place: BERLIN_DT,
        ua: CHROME_WIN,
        device: Some("dt-walt"),
    });
    e.new_refresh_token_id = Some("rt-walt-1".into());
    let e = s.push(Ev {
        session: "x-refresh",
        user: "walt",
        at_min: 460,
        kind: EventKind::TokenRefreshed,
        place: BERLIN_DT,
        ua: CHROME_WIN,
        device: Some("dt-walt"),
    });
    e.refresh_token_id = Some("rt-walt-1".into());
    e.new_refresh_token_id = Some("rt-walt-2".into());
    let e = s.push(Ev {
        session: "x-refresh",
        user: "walt",
        at_min: 475,
        kind: EventKind::TokenRefreshed,
        place: BERLIN_DT,
        ua: CHROME_WIN,
        device: Some("dt-walt"),
    });
    e.refresh_token_id = Some("rt-walt-1".into());
    e.new_refresh_token_id = Some("rt-walt-3".into());
    s.label(
        "x-refresh",
        "attack",
        "refresh_token_reuse",
        true,
        &[Format::Native, Format::Okta],
    );

    let e = s.push(Ev {
        session: "x-scope",
        user: "xena",
        at_min: 420,
        kind: EventKind::TokenIssued,
        place: LONDON_BT,
        ua: CHROME_WIN,
        device: Some("dt-xena"),
    });
    e.scopes = vec!["openid".into(), "profile".into(), "User.Read".into()];
    let e = s.push(Ev {
        session: "x-scope",
        user: "xena",
        at_min: 470,
        kind: EventKind::TokenIssued,
        place: LONDON_BT,
        ua: CHROME_WIN,
        device: Some("dt-xena"),
    });
    e.scopes = vec![
        "openid".into(),
        "Directory.ReadWrite.All".into(),
        "offline_access".into(),
    ];
    s.label(
        "x-scope",
        "attack",
        "scope_escalation",
        false,
        &[Format::Native, Format::Okta],
    );

    s.events.sort_by_key(|e| e.time_ms);
    (s.events, s.labels)
}

/// The story rendered in `format` as NDJSON, and the labels of the sessions it contains.
/// The native rendering leaves location out, so GeoIP enrichment must supply it.
pub fn render(format: Format) -> (String, BTreeMap<String, Label>) {
    let (events, labels) = story();
    let labels: BTreeMap<String, Label> = labels
        .into_iter()
        .filter(|(_, (_, formats))| formats.contains(&format))
        .map(|(k, (l, _))| (k, l))
        .collect();
    let mut out = String::new();
    for mut e in events {
        if !labels.contains_key(&e.session_id) || !format.supports(e.kind) {
            continue;
        }
        e.with_geo = format != Format::Native;
        out.push_str(&e.render(format).to_string());
        out.push('\n');
    }
    (out, labels)
}

/// One generated record: the session it belongs to (the Kafka key), its source id, and the
/// rendered JSON line.
#[derive(Debug, Clone)]
pub struct GenRecord {
    /// Session id.
    pub session_id: String,
    /// User id (the partition key Vigil recommends: it keeps a user's sessions and tokens
    /// together).
    pub user_id: String,
    /// Source record id.
    pub source_id: String,
    /// The record, rendered.
    pub line: String,
}

/// The sample story repeated `copies` times, each copy with its own session, user, token and
/// record ids and shifted `spacing_ms` later, rendered round-robin in the formats given (a
/// copy keeps one format throughout, so its sessions are coherent). Returns the records in
/// time order and the label of every session.
pub fn scaled(
    copies: usize,
    spacing_ms: i64,
    formats: &[Format],
) -> (Vec<GenRecord>, BTreeMap<String, Label>) {
    scaled_mix(copies, spacing_ms, formats, &Mix::default())
}

/// Which attacks a generated copy carries. Benign sessions are always generated.
#[derive(Debug, Clone, Default)]
pub struct Mix {
    /// Attack names to keep (`None`: every attack in the story).
    pub attacks: Option<Vec<String>>,
    /// Attacks go into every n-th copy only (0 or 1: every copy), so that the share of
    /// attack sessions can be lowered towards production rates.
    pub attack_every: usize,
}

impl Mix {
    /// Parses a `--attacks` value: `all`, `none`, or a comma-separated list of attack names.
    /// Unknown names are refused, with the known ones listed.
    pub fn parse_attacks(s: &str) -> Result<Option<Vec<String>>, String> {
        match s.trim() {
            "all" => Ok(None),
            "none" => Ok(Some(Vec::new())),
            list => {
                let known = attack_names();
                let mut out = Vec::new();
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    if !known.contains(&name) {
                        return Err(format!(
                            "unknown attack {name:?}; known: all, none, {}",
                            known.join(", ")
                        ));
                    }
                    out.push(name.to_owned());
                }
                Ok(Some(out))
            }
        }
    }

    fn keeps(&self, copy: usize, label: &Label) -> bool {
        if label.class != "attack" {
            return true;
        }
        if self.attack_every > 1 && !copy.is_multiple_of(self.attack_every) {
            return false;
        }
        self.attacks
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == label.name))
    }
}

/// The names of the attacks in the story, sorted.
pub fn attack_names() -> Vec<&'static str> {
    let (_, labels) = story();
    let mut names: Vec<&'static str> = labels
        .values()
        .filter(|(l, _)| l.class == "attack")
        .map(|(l, _)| l.name)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// [`scaled`] with a choice of attacks: sessions whose label `mix` drops are left out whole.
pub fn scaled_mix(
    copies: usize,
    spacing_ms: i64,
    formats: &[Format],
    mix: &Mix,
) -> (Vec<GenRecord>, BTreeMap<String, Label>) {
    let (events, labels) = story();
    let mut out: Vec<(i64, GenRecord)> = Vec::with_capacity(events.len() * copies);
    let mut all_labels = BTreeMap::new();
    for copy in 0..copies {
        let format = formats[copy % formats.len().max(1)];
        let suffix = format!("-c{copy}");
        for (session, (label, fmts)) in &labels {
            if fmts.contains(&format) && mix.keeps(copy, label) {
                let mut label = label.clone();
                if let Some(id) = label.first_malicious.as_mut() {
                    id.push_str(&suffix);
                }
                all_labels.insert(format!("{session}{suffix}"), label);
            }
        }
        for e in &events {
            let ok = labels
                .get(&e.session_id)
                .is_some_and(|(l, f)| f.contains(&format) && mix.keeps(copy, l));
            if !ok || !format.supports(e.kind) {
                continue;
            }
            let mut e = e.clone();
            e.session_id.push_str(&suffix);
            e.user_id.push_str(&suffix);
            e.id.push_str(&suffix);
            for t in [
                &mut e.token_id,
                &mut e.refresh_token_id,
                &mut e.new_refresh_token_id,
            ]
            .into_iter()
            .flatten()
            {
                t.push_str(&suffix);
            }
            if let Some(d) = e.device_id.as_mut() {
                d.push_str(&suffix);
            }
            e.time_ms += copy as i64 * spacing_ms;
            e.with_geo = format != Format::Native;
            let line = e.render(format).to_string();
            out.push((
                e.time_ms,
                GenRecord {
                    session_id: e.session_id,
                    user_id: e.user_id,
                    source_id: e.id,
                    line,
                },
            ));
        }
    }
    out.sort_by_key(|(t, _)| *t);
    (out.into_iter().map(|(_, r)| r).collect(), all_labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attacks(labels: &BTreeMap<String, Label>) -> Vec<&'static str> {
        let mut v: Vec<_> = labels
            .values()
            .filter(|l| l.class == "attack")
            .map(|l| l.name)
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn mix_keeps_the_named_attacks_and_every_benign_session() {
        let (_, all) = scaled(4, 60_000, &[Format::Native]);
        let mix = Mix {
            attacks: Mix::parse_attacks("concurrent_use, aitm_cookie_replay")
                .expect("known attacks"),
            attack_every: 2,
        };
        let (records, some) = scaled_mix(4, 60_000, &[Format::Native], &mix);
        // Copies 0 and 2 carry the two attacks; copies 1 and 3 none.
        assert_eq!(
            attacks(&some),
            [
                "aitm_cookie_replay",
                "aitm_cookie_replay",
                "concurrent_use",
                "concurrent_use"
            ]
        );
        let benign =
            |l: &BTreeMap<String, Label>| l.values().filter(|l| l.class == "benign").count();
        assert_eq!(benign(&some), benign(&all));
        // No record of a dropped session is generated.
        assert!(records.iter().all(|r| some.contains_key(&r.session_id)));
        assert!(
            records
                .iter()
                .any(|r| r.session_id.starts_with("x-concurrent"))
        );
    }

    #[test]
    fn mix_none_is_benign_only_and_unknown_names_are_refused() {
        let mix = Mix {
            attacks: Mix::parse_attacks("none").expect("none is valid"),
            attack_every: 1,
        };
        let (_, labels) = scaled_mix(2, 60_000, &Format::ALL, &mix);
        assert!(attacks(&labels).is_empty());
        assert!(!labels.is_empty());
        let err = Mix::parse_attacks("concurrent_use,bogus").expect_err("bogus is unknown");
        assert!(
            err.contains("bogus") && err.contains("device_swap"),
            "{err}"
        );
    }
}
