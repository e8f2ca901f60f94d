//! Structured logging through `tracing`; `RUST_LOG` overrides the default filter.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (once; later calls are ignored, which suits tests).
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
