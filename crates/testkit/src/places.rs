//! A small world for tests: places with the networks that serve them. The networks use
//! documentation-style or well-known public ranges and are served by the test GeoIP database.

/// A city with one network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    /// City name.
    pub city: &'static str,
    /// ISO country code.
    pub country: &'static str,
    /// Country name, as Okta writes it.
    pub country_name: &'static str,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// ASN.
    pub asn: u32,
    /// AS organisation.
    pub as_org: &'static str,
    /// A CIDR the network announces.
    pub cidr: &'static str,
    /// An address inside it.
    pub ip: &'static str,
    /// The database's accuracy radius for the network, km.
    pub accuracy_km: u16,
}

macro_rules! place {
    ($name:ident, $city:expr, $cc:expr, $cn:expr, $lat:expr, $lon:expr, $asn:expr, $org:expr, $cidr:expr, $ip:expr) => {
        place!(
            $name, $city, $cc, $cn, $lat, $lon, $asn, $org, $cidr, $ip, 10
        );
    };
    ($name:ident, $city:expr, $cc:expr, $cn:expr, $lat:expr, $lon:expr, $asn:expr, $org:expr, $cidr:expr, $ip:expr, $acc:expr) => {
        #[doc = concat!($city, ", ", $org)]
        pub const $name: Place = Place {
            city: $city,
            country: $cc,
            country_name: $cn,
            lat: $lat,
            lon: $lon,
            asn: $asn,
            as_org: $org,
            cidr: $cidr,
            ip: $ip,
            accuracy_km: $acc,
        };
    };
}

place!(
    LONDON_BT,
    "London",
    "GB",
    "United Kingdom",
    51.5074,
    -0.1278,
    2856,
    "British Telecommunications",
    "81.2.69.0/24",
    "81.2.69.10"
);
place!(
    LONDON_BT_V6,
    "Croydon",
    "GB",
    "United Kingdom",
    51.3762,
    -0.0982,
    2856,
    "British Telecommunications",
    "2a00:23c5::/32",
    "2a00:23c5:1234::1"
);
place!(
    AMSTERDAM_DO,
    "Amsterdam",
    "NL",
    "Netherlands",
    52.3676,
    4.9041,
    14061,
    "DigitalOcean",
    "167.99.0.0/16",
    "167.99.1.20"
);
place!(
    NEW_YORK_VZ,
    "New York",
    "US",
    "United States",
    40.7128,
    -74.006,
    701,
    "Verizon",
    "72.229.28.0/24",
    "72.229.28.185"
);
place!(
    BERLIN_DT,
    "Berlin",
    "DE",
    "Germany",
    52.52,
    13.405,
    3320,
    "Deutsche Telekom",
    "91.64.0.0/16",
    "91.64.1.1"
);
place!(
    BERLIN_O2,
    "Berlin",
    "DE",
    "Germany",
    52.53,
    13.38,
    6805,
    "Telefonica Germany",
    "176.0.0.0/16",
    "176.0.1.2"
);
place!(
    HAMBURG_DT,
    "Hamburg",
    "DE",
    "Germany",
    53.5511,
    9.9937,
    3320,
    "Deutsche Telekom",
    "87.123.0.0/16",
    "87.123.9.9"
);
place!(
    FRANKFURT_ZSCALER,
    "Frankfurt",
    "DE",
    "Germany",
    50.1109,
    8.6821,
    53813,
    "Zscaler",
    "165.225.72.0/22",
    "165.225.72.1"
);
place!(
    LONDON_CORP_NAT,
    "London",
    "GB",
    "United Kingdom",
    51.5155,
    -0.0922,
    2856,
    "British Telecommunications",
    "198.51.100.0/24",
    "198.51.100.7"
);
place!(
    SINGAPORE_AWS,
    "Singapore",
    "SG",
    "Singapore",
    1.3521,
    103.8198,
    16509,
    "Amazon",
    "13.228.0.0/16",
    "13.228.4.4"
);
place!(
    SAO_PAULO_VIVO,
    "Sao Paulo",
    "BR",
    "Brazil",
    -23.5505,
    -46.6333,
    26599,
    "Telefonica Brasil",
    "177.32.0.0/16",
    "177.32.7.7"
);

// Carrier networks for laptops tethered to a phone: the database places them at the
// carrier's hub, far from the user, with a radius as wide as that uncertainty.
place!(
    DUSSELDORF_VODAFONE_MOBILE,
    "Dusseldorf",
    "DE",
    "Germany",
    51.2277,
    6.7735,
    3209,
    "Vodafone GmbH",
    "5.146.0.0/16",
    "5.146.3.3",
    500
);
place!(
    MANCHESTER_EE_MOBILE,
    "Manchester",
    "GB",
    "United Kingdom",
    53.4808,
    -2.2426,
    12576,
    "EE Limited",
    "31.94.0.0/16",
    "31.94.2.2",
    200
);

/// Every place, for the GeoIP database.
pub const ALL: [Place; 13] = [
    LONDON_BT,
    LONDON_BT_V6,
    AMSTERDAM_DO,
    NEW_YORK_VZ,
    BERLIN_DT,
    BERLIN_O2,
    HAMBURG_DT,
    FRANKFURT_ZSCALER,
    LONDON_CORP_NAT,
    SINGAPORE_AWS,
    SAO_PAULO_VIVO,
    DUSSELDORF_VODAFONE_MOBILE,
    MANCHESTER_EE_MOBILE,
];
