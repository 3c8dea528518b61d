//! The `vod-purge` binary: parses the command line and runs one subcommand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use vod_purge::config::Settings;
use vod_purge::startup::Application;

#[derive(Parser)]
#[command(
    name = "vod-purge",
    version,
    about = "Batched, rate-limited ApsaraVideo VOD purges from CMS webhooks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve {
        /// TOML configuration file; the embedded defaults fill in what it leaves out.
        #[arg(long, env = "VOD_PURGE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run the VOD simulator (a real HTTP server speaking the VOD RPC protocol).
    Sim(vod_purge::sim::SimArgs),
    /// Run the service and the simulator together, on the embedded store: no cloud account needed.
    Demo {
        /// Where the service listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Where the simulator listens.
        #[arg(long, default_value = "127.0.0.1:9000")]
        sim_listen: String,
        /// The SQLite file of the demo.
        #[arg(long, default_value = "data/demo.db")]
        db: String,
    },
    /// Validate a configuration and print the effective settings, secrets redacted.
    CheckConfig {
        #[arg(long, env = "VOD_PURGE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Enqueue media IDs through a running service (POST /purge).
    Purge {
        /// Base URL of the service.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The admin bearer token.
        #[arg(long, env = "VOD_PURGE_ADMIN_TOKEN")]
        token: String,
        /// Refresh, Preload or RefreshThenPreload.
        #[arg(long, default_value = "Refresh")]
        task: String,
        /// Media IDs.
        #[arg(required = true)]
        media_ids: Vec<String>,
    },
    /// Exit 0 when the URL answers 2xx (the container health check; needs no shell).
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
}

/// mimalloc instead of the system allocator: a request on the ingest path makes a few dozen
/// small allocations, and glibc's malloc spent over a tenth of the HTTP workers' CPU on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::Sim(args) => vod_purge::sim::run(args),
        Command::Demo {
            listen,
            sim_listen,
            db,
        } => demo(listen, sim_listen, db),
        Command::CheckConfig { config } => check_config(config),
        Command::Purge {
            url,
            token,
            task,
            media_ids,
        } => purge(url, token, task, media_ids),
        Command::Healthcheck { url } => healthcheck(url),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vod-purge: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    vod_purge::telemetry::init(settings.server.log_format);
    runtime()?.block_on(async {
        let app = Application::build(settings).await?;
        tracing::info!(port = app.port(), "vod-purge is serving");
        stop_on_signal(app.shutdown_handle());
        app.run_until_stopped().await
    })
}

fn demo(listen: String, sim_listen: String, db: String) -> anyhow::Result<()> {
    let settings = Settings::from_toml(&format!(
        r#"
        [server]
        listen = "{listen}"
        admin_token = "demo-token"
        [store]
        url = "sqlite://{db}"
        [vod]
        endpoint = "http://{sim_listen}"
        credentials = "config"
        access_key_id = "testid"
        access_key_secret = "testsecret"
        cdn_domains = ["cdn.example.com"]
        [[sources]]
        name = "cms"
        auth = "bearer"
        secrets = ["demo-secret"]
        format = "native"
        "#
    ))?;
    vod_purge::telemetry::init(settings.server.log_format);
    runtime()?.block_on(async {
        let sim_listener = std::net::TcpListener::bind(&sim_listen)
            .with_context(|| format!("cannot listen on {sim_listen} for the simulator"))?;
        let sim = vod_purge::sim::start_with_listener(sim_listener, vod_purge::sim::SimConfig { quota_refresh: 1_000_000, quota_preload: 1_000_000, cdn_domains: vec!["cdn.example.com".into()], ..Default::default() }).await?;
        let app = Application::build(settings).await?;
        println!("vod-purge demo");
        println!("  service:   http://{listen}   (admin token: demo-token; webhook source \"cms\", bearer demo-secret)");
        println!("  simulator: {}   (AccessKey testid / testsecret; calls at /_sim/calls)", sim.base_url());
        println!("  store:     {db}");
        stop_on_signal(app.shutdown_handle());
        app.run_until_stopped().await?;
        sim.stop().await;
        Ok(())
    })
}

fn check_config(config: Option<PathBuf>) -> anyhow::Result<()> {
    // Loading runs every check `serve` runs, the sources compiled as it compiles them.
    let settings = Settings::load(config.as_deref())?;
    print!("{}", settings.to_redacted_toml());
    println!();
    let runtime = runtime()?;
    for account in settings.accounts() {
        let name = &account.name;
        if account.dry_run {
            println!("# credentials [{name}]: none needed (dry_run = true)");
            continue;
        }
        let chain = account.chain(&settings.environment);
        let (resolved, _) = runtime.block_on(vod_purge::credentials::resolve_for(&chain))?;
        for passed in &resolved.passed {
            let verdict = if passed.failed { "failed" } else { "skipped" };
            println!(
                "# credentials [{name}]: {} {verdict}: {}",
                passed.provider, passed.reason
            );
        }
        let expiry = match resolved.first.expires_at {
            Some(at) => format!(", expires {}, renewed in the background", at.to_rfc3339()),
            None => String::new(),
        };
        println!(
            "# credentials [{name}]: using {} ({}{expiry}) for {}",
            resolved.provider,
            resolved.plan.describe(),
            account.vod_base_url()
        );
    }
    Ok(())
}

fn purge(url: String, token: String, task: String, media_ids: Vec<String>) -> anyhow::Result<()> {
    vod_purge::vod::install_tls_provider();
    runtime()?.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{}/purge", url.trim_end_matches('/')))
            .bearer_auth(token)
            .json(&serde_json::json!({"media_ids": media_ids, "task": task}))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        println!("{body}");
        anyhow::ensure!(status.is_success(), "the service answered {status}");
        Ok(())
    })
}

fn healthcheck(url: String) -> anyhow::Result<()> {
    vod_purge::vod::install_tls_provider();
    runtime()?.block_on(async {
        let response = reqwest::Client::new()
            .get(&url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        anyhow::ensure!(
            response.status().is_success(),
            "{url} answered {}",
            response.status()
        );
        Ok(())
    })
}

/// SIGTERM (Kubernetes) and SIGINT (Ctrl-C) start a graceful shutdown.
fn stop_on_signal(handle: vod_purge::startup::ShutdownHandle) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
        handle.shutdown();
    });
}
