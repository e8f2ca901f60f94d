use clap::{Parser, Subcommand};

use trainserve::config::Config;
use trainserve::startup::{Application, shutdown_signal};

/// trainserve: train MLPs on your data over HTTP and serve their predictions.
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the service (the default).
    Serve(Config),
    /// Run a benchmark and print JSON lines.
    Bench(trainserve::bench::BenchArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Bench(args)) => trainserve::bench::run(args).await,
        Some(Command::Serve(config)) => serve(config).await,
        None => serve(cli.config).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("trainserve: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> trainserve::error::Result<()> {
    trainserve::telemetry::init(config.log_json);
    let app = Application::build(config).await?;
    app.run_until_stopped(shutdown_signal()).await
}
