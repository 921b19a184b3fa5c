//! Writes `tests/data/geoip-test.mmdb` and `tests/data/samples/*` from the testkit.

use std::fs;
use std::path::PathBuf;

use vigil_testkit::render::Format;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data");
    fs::create_dir_all(root.join("samples"))?;
    fs::write(
        root.join("geoip-test.mmdb"),
        vigil_testkit::geoip::test_database(),
    )?;
    for f in Format::ALL {
        let (text, labels) = vigil_testkit::samples::render(f);
        fs::write(root.join(format!("samples/{}.jsonl", f.name())), text)?;
        let labels = serde_json::to_string_pretty(&labels).map_err(std::io::Error::other)?;
        fs::write(
            root.join(format!("samples/{}.labels.json", f.name())),
            labels + "\n",
        )?;
    }
    println!("wrote {}", root.display());
    Ok(())
}
