//! User-agent families: enough to tell a browser or OS swap from a version bump.
//!
//! A full UA database is not needed: the signal is "the client software changed kind"
//! (Chrome to python-requests, Windows to Linux), not which version it is.

/// Client software family and operating system, each as a small code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct UaInfo {
    /// Browser or HTTP client family; unknown products are a hash of their product token.
    pub family: u32,
    /// Operating system family.
    pub os: Os,
}

/// Operating-system families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Os {
    /// Not stated by the user agent.
    Unknown,
    /// Microsoft Windows.
    Windows,
    /// Apple macOS.
    MacOs,
    /// Apple iOS / iPadOS.
    Ios,
    /// Android.
    Android,
    /// ChromeOS.
    ChromeOs,
    /// Other Linux.
    Linux,
}

const KNOWN: &[(&str, u32, &str)] = &[
    // (needle, family code, family name); order matters: Edge and Opera also say "Chrome/".
    ("Edg/", 1, "edge"),
    ("EdgA/", 1, "edge"),
    ("EdgiOS/", 1, "edge"),
    ("Edge/", 1, "edge"),
    ("OPR/", 2, "opera"),
    ("Opera", 2, "opera"),
    ("SamsungBrowser/", 3, "samsung"),
    ("Firefox/", 4, "firefox"),
    ("FxiOS/", 4, "firefox"),
    ("CriOS/", 5, "chrome"),
    ("Chrome/", 5, "chrome"),
    ("Chromium/", 5, "chrome"),
    ("Version/", 6, "safari"),
    ("curl/", 10, "curl"),
    ("Wget/", 11, "wget"),
    ("python-requests", 12, "python"),
    ("python-urllib", 12, "python"),
    ("Python-urllib", 12, "python"),
    ("aiohttp", 12, "python"),
    ("python-httpx", 12, "python"),
    ("Go-http-client", 13, "go"),
    ("okhttp", 14, "okhttp"),
    ("Java/", 15, "java"),
    ("Apache-HttpClient", 15, "java"),
    ("node-fetch", 16, "node"),
    ("axios/", 16, "node"),
    ("undici", 16, "node"),
    ("PowerShell", 17, "powershell"),
    ("PostmanRuntime", 18, "postman"),
    ("HeadlessChrome", 19, "headless_chrome"),
];

/// Parses a user agent into its family and OS.
pub fn parse(ua: &str) -> UaInfo {
    let family = if ua.contains("HeadlessChrome") {
        19
    } else {
        KNOWN
            .iter()
            .find(|(needle, _, _)| ua.contains(needle))
            .map(|(_, code, _)| *code)
            .filter(|code| *code != 6 || ua.contains("Safari/"))
            .unwrap_or_else(|| product_hash(ua))
    };
    UaInfo {
        family,
        os: os_of(ua),
    }
}

/// A readable family name for alerts.
pub fn family_name(code: u32) -> &'static str {
    KNOWN
        .iter()
        .find(|(_, c, _)| *c == code)
        .map_or("other", |(_, _, n)| n)
}

fn os_of(ua: &str) -> Os {
    if ua.contains("iPhone") || ua.contains("iPad") || ua.contains("iOS") {
        Os::Ios
    } else if ua.contains("Android") {
        Os::Android
    } else if ua.contains("Windows") {
        Os::Windows
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") || ua.contains("macOS") {
        Os::MacOs
    } else if ua.contains("CrOS") {
        Os::ChromeOs
    } else if ua.contains("Linux") {
        Os::Linux
    } else {
        Os::Unknown
    }
}

/// Unknown clients are told apart by their first product token (`MyApp/1.2` → `MyApp`),
/// so a version bump keeps the family.
fn product_hash(ua: &str) -> u32 {
    let product = ua.split(['/', ' ', '(']).next().unwrap_or("");
    // FNV-1a; codes below 1024 are reserved for known families.
    let mut h: u32 = 0x811c_9dc5;
    for b in product.bytes() {
        h ^= u32::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0100_0193);
    }
    h | 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_WIN_120: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const CHROME_WIN_121: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.6167.85 Safari/537.36";
    const EDGE_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91";
    const SAFARI_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1";
    const SAFARI_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15";

    #[test]
    fn version_bump_keeps_family() {
        assert_eq!(parse(CHROME_WIN_120), parse(CHROME_WIN_121));
        assert_eq!(parse("MyApp/1.0 (x)"), parse("MyApp/2.3 (y)"));
    }

    #[test]
    fn families_and_os_differ() {
        assert_ne!(parse(CHROME_WIN_120).family, parse(EDGE_WIN).family);
        assert_eq!(family_name(parse(EDGE_WIN).family), "edge");
        assert_eq!(parse(SAFARI_IOS).os, Os::Ios);
        assert_eq!(parse(SAFARI_MAC).os, Os::MacOs);
        assert_eq!(family_name(parse(SAFARI_MAC).family), "safari");
        assert_eq!(
            family_name(parse("python-requests/2.31.0").family),
            "python"
        );
        assert_ne!(parse("MyApp/1.0").family, parse("OtherApp/1.0").family);
    }
}
