//! The TLS crypto provider. The HTTP client is built with rustls but no
//! bundled provider (the default, aws-lc, needs a C toolchain and cmake and
//! is hard to cross-compile); ring is installed here, once, before the first
//! client is built. The provider is process-wide only inside this library:
//! the host's own TLS stack, if any, is untouched.

use std::sync::Once;

static INSTALL: Once = Once::new();

pub fn ensure_provider() {
    INSTALL.call_once(|| {
        // Err means a provider is already installed, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
