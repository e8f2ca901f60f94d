use clap::Parser;

use trainserve::commands::TokensArgs;
use trainserve::config::Config;
use trainserve::startup::{Application, configure_process, shutdown_signal};

/// trainserve: train MLPs and CNNs on your data over HTTP and serve their predictions.
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Start the service (the default).
    Serve(Config),
    /// Create, list and revoke API tokens, on the data folder directly (no server needed).
    Tokens(TokensArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    configure_process(None);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("trainserve: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let config = match cli.command {
        Some(Command::Serve(config)) => config,
        Some(Command::Tokens(args)) => {
            return match runtime.block_on(trainserve::commands::tokens(args)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("trainserve tokens: {err}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        None => cli.config,
    };
    match runtime.block_on(serve(config)) {
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
