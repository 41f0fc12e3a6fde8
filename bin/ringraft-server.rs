//! `ringraft-server`: runs one node of a ringraft cluster until SIGTERM or
//! SIGINT. Parses the configuration, starts the library's server, waits for
//! a signal and shuts it down cleanly; nothing else.
//!
//! Exit codes: 0 after a clean shutdown (or `--help`), 1 when the server
//! cannot start, 2 for a configuration error.

use std::process::ExitCode;

use ringraft_service::config::{ConfigError, ServerConfig};
use ringraft_service::identity::Identity;
use ringraft_service::server::Server;
use ringraft_tools::signals;

fn main() -> ExitCode {
    let mut args = Vec::new();
    for arg in std::env::args_os() {
        match arg.into_string() {
            Ok(a) => args.push(a),
            Err(bad) => {
                eprintln!(
                    "ringraft-server: argument {bad:?} is not valid UTF-8\n\nFor more information, try '--help'."
                );
                return ExitCode::from(2);
            }
        }
    }
    let config = match ServerConfig::from_args_env_file(args, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(ConfigError::Help(text)) => {
            println!("{}", text.trim_end());
            return ExitCode::SUCCESS;
        }
        Err(e @ ConfigError::Usage(_)) => {
            eprintln!("ringraft-server: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("ringraft-server: {e}\n\nFor more information, try '--help'.");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // Fail-stop: a panic anywhere (a failed invariant, a snapshot that fails
    // verification, a failed fsync) ends the process instead of leaving it
    // running with a dead thread; a restart recovers from what is durable.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if ringraft_service::checkpoint::panic_is_caught_by_checkpoint_open() {
            // sled failing on a damaged checkpoint: caught, and the state
            // rebuilt from a snapshot and the log.
            log::error!("ringraft-server: sled panicked opening the checkpoint: {info}");
            return;
        }
        default_hook(info);
        log::error!("ringraft-server: fatal: {info}; exiting (restart to recover from disk)");
        std::process::exit(70);
    }));

    match fd_limit::raise() {
        Ok((from, to)) if from < to => log::info!("open-files limit raised from {from} to {to} (the hard limit)"),
        Ok(_) => {}
        Err(e) => log::warn!("cannot raise the open-files limit: {e}"),
    }
    // Blocked before any thread exists, so every thread the server spawns
    // inherits the mask and the signals wait for `sigwait` below.
    let signals = match signals::block_term_int() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringraft-server: cannot block SIGTERM/SIGINT: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (node, cluster, advertise, data_dir) =
        (config.node_id, config.cluster_id, config.advertise, config.data_dir.clone());
    let server = match Server::start(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringraft-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The server has checked IDENTITY; read it back for the cluster id, which
    // the config may leave at 0 on a restart.
    let cluster = Identity::load(&data_dir).map_or(cluster, |id| id.cluster_id);
    log::info!("node {node} of cluster {cluster} listening on {} (advertised {advertise})", server.local_addr());

    match signals.wait() {
        Ok(sig) => log::info!("{}: shutting down (a second signal exits at once)", signals::name(sig)),
        Err(e) => log::error!("waiting for a signal failed ({e}); shutting down"),
    }
    signals.exit_on_next();
    server.shutdown();
    log::info!("shut down cleanly");
    ExitCode::SUCCESS
}

/// The open-files limit: every connection costs a descriptor or two, so
/// the soft limit (often 1024) is raised to the hard one at start, as
/// servers commonly do.
mod fd_limit {
    use std::io;

    /// Sets the soft `RLIMIT_NOFILE` to the hard limit; returns `(old, new)`.
    pub fn raise() -> io::Result<(u64, u64)> {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let old = lim.rlim_cur;
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            // SAFETY: `lim` is initialised; raising the soft limit up to the
            // hard one needs no privilege.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok((old, lim.rlim_cur))
    }
}
