//! The safe logic of one open replica database: lock state and the pinned
//! snapshot, page reads with the page-1 patch, pragmas and the values the
//! SQL functions report. The C trampolines in `sqlite::vfs` call into this.

mod file;
mod hooks;
mod page1;
mod pragma;
mod timeparse;

pub use file::{DbFile, LockLevel};
pub use hooks::PanicHook;
pub use pragma::PragmaResult;
pub use timeparse::{ACCEPTED as ACCEPTED_TIMES, TimeTarget, parse_time};
