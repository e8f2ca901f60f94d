use std::process::ExitCode;

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
    #[command(flatten)]
    Client(trainserve::cli::ClientCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // A client of a running service: none of the service's process settings apply.
        Some(Command::Client(command)) => trainserve::cli::run(command),
        Some(Command::Tokens(args)) => tokens(args),
        Some(Command::Serve(config)) => run_service(config),
        None => run_service(cli.config),
    }
}

/// The process set up for training and its runtime; `None` after saying why there is none.
fn start_runtime() -> Option<tokio::runtime::Runtime> {
    configure_process(None);
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(err) => {
            eprintln!("trainserve: cannot start the async runtime: {err}");
            None
        }
    }
}

fn tokens(args: TokensArgs) -> ExitCode {
    let Some(runtime) = start_runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(trainserve::commands::tokens(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("trainserve tokens: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run_service(config: Config) -> ExitCode {
    let Some(runtime) = start_runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("trainserve: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> trainserve::error::Result<()> {
    trainserve::telemetry::init(config.log_json);
    let app = Application::build(config).await?;
    app.run_until_stopped(shutdown_signal()).await
}
