//! The native record the engine benches feed: one session, at one of a few places by session
//! number, with its own device and token.

/// Sessions belong to at most this many users (ten sessions each at ten million sessions), so
/// the user table holds what a large tenant's would.
pub const MAX_USERS: usize = 1_000_000;

/// A native access record `id` for session `s` at second `t`.
pub fn line(s: usize, t: usize, id: &str) -> String {
    let user = s % MAX_USERS;
    let places = [
        (51.5074, -0.1278, 2856, "GB"),
        (52.52, 13.405, 3320, "DE"),
        (48.8566, 2.3522, 3215, "FR"),
    ];
    let (lat, lon, asn, cc) = places[s % places.len()];
    format!(
        r#"{{"id":"{id}","time":{},"kind":"access","session_id":"sess-{s}","user_id":"user-{user}","ip":"81.2.69.{}","user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36","device_id":"dt-{s}","token_id":"jti-{s}","geo":{{"country":"{cc}","lat":{lat},"lon":{lon}}},"asn":{asn}}}"#,
        1_714_550_400_000i64 + (t as i64) * 1000,
        s % 250
    )
}
