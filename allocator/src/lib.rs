//! The server's global allocator: mimalloc, tuned to return memory at once.
//!
//! mimalloc instead of glibc's malloc: each Argon2 hash takes `PASSWORD_HASH_MEMORY_KIB` (19 MiB)
//! on whichever blocking thread runs it, and glibc keeps such blocks in per-thread arenas after
//! they are freed, so a burst of sign-ins leaves the server's memory high long after it even with
//! hashing bounded; mimalloc returns them to the system.
//!
//! Left at its defaults, mimalloc commits each thread's segments eagerly and keeps freed pages
//! for 10 ms before giving them back; with a dozen threads touching memory under load that
//! raised the spend load's peak resident memory by about a third. [`tune`] turns both off.
//! Figures in docs/performance.md.
//!
//! This crate is the workspace's one use of `unsafe` (the workspace forbids it everywhere else).

pub use mimalloc::MiMalloc;

/// mimalloc 2.x's option numbers (`mi_option_e` in `mimalloc.h`, v2, as built by libmimalloc-sys
/// 0.1.49); the Rust bindings do not name these three.
const EAGER_COMMIT: libmimalloc_sys::mi_option_t = 3;
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Commits memory only when it is touched and gives freed pages back at once. Call first thing in
/// `main`, before any thread is started: mimalloc's option setters are not thread safe.
pub fn tune() {
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
        super::tune();
        #[expect(unsafe_code, reason = "reading mimalloc's options back")]
        // SAFETY: a read of mimalloc's option table; the test is single-threaded here.
        let read = unsafe {
            [super::EAGER_COMMIT, super::ARENA_EAGER_COMMIT, super::PURGE_DELAY]
                .map(|option| libmimalloc_sys::mi_option_get(option))
        };
        assert_eq!(read, [0, 0, 0]);
    }
}
