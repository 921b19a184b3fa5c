//! Great-circle distances between client locations.

/// Mean Earth radius in km.
const EARTH_RADIUS_KM: f64 = 6371.0;

/// Haversine distance in km between two (lat, lon) points in degrees.
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    // The common case (a session seen again where it was): no trigonometry, the same 0.
    if a == b {
        return 0.0;
    }
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let dlat = lat2 - lat1;
    let dlon = lon2 - lon1;
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_distances() {
        let london = (51.5074, -0.1278);
        let new_york = (40.7128, -74.0060);
        let d = distance_km(london, new_york);
        assert!((d - 5570.0).abs() < 15.0, "{d}");
        assert_eq!(distance_km(london, london), 0.0);
        let antipode = distance_km((0.0, 0.0), (0.0, 180.0));
        assert!((antipode - 20_015.0).abs() < 5.0, "{antipode}");
    }
}
