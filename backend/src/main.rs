use std::io::Write;

use clap::Parser;
use tollgate::cli::{Cli, run};

/// mimalloc, tuned: see the `tollgate-allocator` crate.
#[global_allocator]
static ALLOCATOR: tollgate_allocator::MiMalloc = tollgate_allocator::MiMalloc;

fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info,sqlx=warn,sea_orm=warn"))
        .format(|buf, record| {
            let rid = tollgate::request_id::current().map(|id| format!(" rid={id}")).unwrap_or_default();
            writeln!(
                buf,
                "{} {:<5} {}{} {}",
                chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                record.level(),
                record.target(),
                rid,
                record.args()
            )
        })
        .init();
}

fn main() {
    // Before the runtime starts any thread.
    tollgate_allocator::tune();
    actix_web::rt::System::new().block_on(serve());
}

async fn serve() {
    init_logging();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("tollgate: {err:#}");
            std::process::exit(2);
        }
    }
}
