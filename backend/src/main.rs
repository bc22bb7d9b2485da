use std::io::Write;

use clap::Parser;
use tollgate::cli::{Cli, run};

/// mimalloc instead of glibc's malloc: each Argon2 hash takes `PASSWORD_HASH_MEMORY_KIB` (19 MiB)
/// on whichever blocking thread runs it, and glibc keeps such blocks in per-thread arenas after
/// they are freed, so a burst of sign-ins leaves the server's memory high long after it even with
/// hashing bounded; mimalloc returns them to the system. Figures in docs/performance.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

#[actix_web::main]
async fn main() {
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
