//! The server's global allocator: mimalloc, tuned to return memory at once.
//!
//! mimalloc instead of glibc's malloc: each Argon2 hash takes `PASSWORD_HASH_MEMORY_KIB` (19 MiB)
//! on whichever blocking thread runs it, and glibc keeps such blocks in per-thread arenas after
//! they are freed, so a burst of sign-ins leaves the server's memory high long after it even with
//! hashing bounded; mimalloc returns them to the system.
//!
//! Left at its defaults, mimalloc commits its arenas and each thread's segments eagerly and keeps
//! freed pages for 10 ms before giving them back; with a dozen threads touching memory under load
//! that raised the spend load's peak resident memory by half again. [`tune`] turns both off.
//! Figures in docs/performance.md.
//!
//! This crate is the workspace's one use of `unsafe` (the workspace forbids it everywhere else).

pub use mimalloc::MiMalloc;

/// mimalloc 2.x's option numbers (`mi_option_e` in `mimalloc.h`, v2, as built by libmimalloc-sys
/// 0.1.49); the Rust bindings do not name these three.
const EAGER_COMMIT: libmimalloc_sys::mi_option_t = 3;
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc's settings for a server: commit memory only when it is touched, and give freed pages
/// back at once. An operator's own `MIMALLOC_*` values win.
const SETTINGS: [(&str, &str); 3] =
    [("MIMALLOC_EAGER_COMMIT", "0"), ("MIMALLOC_ARENA_EAGER_COMMIT", "0"), ("MIMALLOC_PURGE_DELAY", "0")];

/// Applies `SETTINGS`. Call first thing in `main`.
///
/// mimalloc reads its settings from the environment when the process starts, before `main`: its
/// first arena is set up for the runtime's own allocations by then, and setting the options later
/// (`mi_option_set`) changes only part of its behaviour (measured: the spend load's peak at 63 MiB
/// instead of 46; see docs/performance.md). So when a setting is missing from the environment, the
/// process runs itself again, in place (`exec`, same pid, same arguments), with the settings added;
/// the second start finds them and goes on. Where that cannot be done, the options are set in
/// process instead.
pub fn tune() {
    #[cfg(unix)]
    if SETTINGS.iter().any(|(name, _)| std::env::var_os(name).is_none()) {
        use std::os::unix::process::CommandExt;
        if let Ok(exe) = std::env::current_exe() {
            let mut args = std::env::args_os();
            let mut command = std::process::Command::new(exe);
            if let Some(arg0) = args.next() {
                command.arg0(arg0);
            }
            command.args(args);
            for (name, value) in SETTINGS {
                if std::env::var_os(name).is_none() {
                    command.env(name, value);
                }
            }
            // Returns only if the process could not be replaced.
            let _ = command.exec();
        }
    }
    set_options();
}

/// The same settings, set in the running process: commit on touch, purge at once.
fn set_options() {
    #[expect(unsafe_code, reason = "mimalloc's C option setter; see the safety note")]
    // SAFETY: `mi_option_set` writes one entry of mimalloc's option table. Called from `main`
    // before other threads exist, nothing reads the table concurrently; the option numbers are
    // those of the pinned release (see above), and every value given is valid for its option.
    unsafe {
        libmimalloc_sys::mi_option_set(EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_options_set_are_the_ones_read_back() {
        super::set_options();
        #[expect(unsafe_code, reason = "reading mimalloc's options back")]
        // SAFETY: a read of mimalloc's option table; the test is single-threaded here.
        let read = unsafe {
            [super::EAGER_COMMIT, super::ARENA_EAGER_COMMIT, super::PURGE_DELAY]
                .map(|option| libmimalloc_sys::mi_option_get(option))
        };
        assert_eq!(read, [0, 0, 0]);
    }
}
