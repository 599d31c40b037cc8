//! Prints this node's id and fingerprint as JSON:
//! `cargo run -p dcloud-agent --example fingerprint [DATA_DIR]`.

use dcloud_agent::{fingerprint, node_agent_id, FingerprintConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = FingerprintConfig::default();
    if let Some(dir) = std::env::args().nth(1) {
        config.data_dir = dir.into();
    }
    let (node_id, fp) = fingerprint(&config)?;
    let out = serde_json::json!({
        "node_id": node_id,
        "node_agent_id": node_agent_id(&node_id),
        "fingerprint": fp,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
