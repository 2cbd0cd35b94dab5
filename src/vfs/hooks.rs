//! Fault hooks for the panic-safety tests: `PRAGMA litestream_test_panic`
//! arms a panic at one place of the next call, to prove that a panic
//! becomes an SQLite error and leaves the connection usable.
//!
//! Only a build with the `test-hooks` feature has them (the test suite
//! builds one for those tests); in any other build `Hooks` is empty, the
//! pragma does not exist and every `fire` compiles to nothing.

/// Where an armed hook panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PanicHook {
    Off = 0,
    /// In the next read, before the connection's lock is taken.
    Read = 1,
    /// In the next read, while the connection's lock is held.
    Locked = 2,
    /// In the next SQL function call.
    Function = 3,
}

impl PanicHook {
    /// The hook a pragma value names.
    pub fn named(value: &str) -> Option<PanicHook> {
        Some(match value {
            "read" => PanicHook::Read,
            "locked" => PanicHook::Locked,
            "function" => PanicHook::Function,
            _ => return None,
        })
    }
}

/// The hook armed on one connection.
#[derive(Default)]
pub struct Hooks {
    #[cfg(feature = "test-hooks")]
    armed: std::sync::atomic::AtomicU8,
}

impl Hooks {
    /// Arms `hook` for its next occasion.
    #[cfg(feature = "test-hooks")]
    pub fn arm(&self, hook: PanicHook) {
        self.armed
            .store(hook as u8, std::sync::atomic::Ordering::SeqCst);
    }

    /// Panics if `hook` is armed (and disarms it).
    #[cfg(feature = "test-hooks")]
    pub fn fire(&self, hook: PanicHook) {
        use std::sync::atomic::Ordering::SeqCst;
        if self
            .armed
            .compare_exchange(hook as u8, PanicHook::Off as u8, SeqCst, SeqCst)
            .is_ok()
        {
            panic!("test hook: panic ({hook:?})");
        }
    }

    #[cfg(not(feature = "test-hooks"))]
    #[inline(always)]
    pub fn fire(&self, _hook: PanicHook) {}
}
