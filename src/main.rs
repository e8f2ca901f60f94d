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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // candle asks the OS how many cores there are on every matrix product unless this is set
    // (a quarter of a small MLP's training time); fix it once, while the process has one thread.
    let bench_threads = match &cli.command {
        Some(Command::Bench(args)) if args.threads > 0 => Some(args.threads),
        _ => None,
    };
    if std::env::var_os("RAYON_NUM_THREADS").is_none() || bench_threads.is_some() {
        let threads = bench_threads.unwrap_or_else(candle_core::utils::get_num_threads);
        // SAFETY: no other thread exists yet, so nothing can read the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    // candle's element-wise ops (and the gradient sums of backward) otherwise run on a
    // process-wide spinning pool outside any job's thread budget; on the calling thread they
    // measured faster beside trainserve's kernels.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: as above, no other thread exists yet.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
    kernels::keep_freed_memory();
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
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Bench(args)) => trainserve::bench::run(args).await,
            Some(Command::Serve(config)) => serve(config).await,
            None => serve(cli.config).await,
        }
    });
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
