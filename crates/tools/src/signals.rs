//! SIGTERM/SIGINT handling for the binaries (`ringraft-server`,
//! `ringraft-nemesis`): the signals are blocked in every thread and taken
//! with `sigwait` by whoever waits for them, so no handler runs
//! asynchronously and nothing polls.

#![allow(unsafe_code)]

use std::io;

/// The blocked set {SIGTERM, SIGINT}.
pub struct TermInt(libc::sigset_t);

/// Blocks SIGTERM and SIGINT in the calling thread (and so in every
/// thread it spawns afterwards).
pub fn block_term_int() -> io::Result<TermInt> {
    // SAFETY: sigemptyset/sigaddset only write to the set we own; a
    // zeroed sigset_t is valid storage for sigemptyset to initialise.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    };
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(TermInt(set))
}

impl TermInt {
    /// Blocks until SIGTERM or SIGINT is pending, takes it, returns its number.
    pub fn wait(&self) -> io::Result<libc::c_int> {
        let mut sig: libc::c_int = 0;
        // SAFETY: the set is initialised and its signals are blocked in
        // this thread; `sig` is a valid place for the result.
        let rc = unsafe { libc::sigwait(&self.0, &mut sig) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(sig)
    }

    /// From now on, another SIGTERM/SIGINT ends the process at once
    /// (exit 130) instead of waiting for a shutdown that may be stuck.
    /// Acknowledged writes are already fsynced, so this is no worse
    /// than a crash.
    pub fn exit_on_next(self) {
        std::thread::spawn(move || {
            if let Ok(sig) = self.wait() {
                log::warn!("second {}: exiting without a clean shutdown", name(sig));
                std::process::exit(130);
            }
        });
    }
}

/// The signal's name for the log.
pub fn name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "signal",
    }
}
