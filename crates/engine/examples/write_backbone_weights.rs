//! Writes small, randomly initialized weights for each candle-transformers backbone trainserve
//! serves, under the tensor names of their public checkpoints, with the model spec beside each:
//!
//! ```sh
//! cargo run -p trainserve-engine --example write_backbone_weights -- [out_dir] [classes]
//! ```
//!
//! The files upload with `POST /v1/weights` and stand in for real checkpoints in tests and
//! demonstrations (no torch needed, nothing downloaded).

use std::path::PathBuf;

use engine::random_weights;
use engine::spec::ModelSpec;

/// The backbones written: a file name and its model spec.
const BACKBONES: [(&str, &str); 3] = [
    (
        "vit_tiny",
        r#"{"kind": "vit", "image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}"#,
    ),
    (
        "convnext_atto",
        r#"{"kind": "convnext", "variant": "convnext_atto"}"#,
    ),
    (
        "convnextv2_atto",
        r#"{"kind": "convnext", "variant": "convnextv2_atto"}"#,
    ),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "backbone-weights".into()));
    let classes: usize = args.next().map_or(Ok(10), |c| c.parse())?;
    std::fs::create_dir_all(&out)?;
    for (name, json) in BACKBONES {
        let spec: ModelSpec = serde_json::from_str(json)?;
        let tensors = random_weights(&spec, classes, 0)?;
        let path = out.join(format!("{name}.safetensors"));
        candle_core::safetensors::save(&tensors.into_iter().collect(), &path)?;
        std::fs::write(out.join(format!("{name}.json")), json)?;
        println!("{}: {json}", path.display());
    }
    Ok(())
}
