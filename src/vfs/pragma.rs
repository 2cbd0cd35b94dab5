//! The `litestream_*` PRAGMAs, reached through SQLite's file-control hook.

use crate::error::{Error, Result};

use super::file::DbFile;
#[cfg(feature = "test-hooks")]
use super::hooks::PanicHook;
use super::timeparse::parse_time;
use crate::timefmt::format_rfc3339_nano;

/// What a pragma returns: one text row, or nothing.
pub type PragmaResult = Option<String>;

impl DbFile {
    /// Handles `PRAGMA name [= value]`. `None` when the pragma is not ours,
    /// so that SQLite handles it.
    pub fn pragma(&self, name: &str, value: Option<&str>) -> Option<Result<PragmaResult>> {
        let name = name.to_ascii_lowercase();
        let read_only = |v: Result<String>| match value {
            Some(_) => Err(Error::Usage(format!("PRAGMA {name} is read-only"))),
            None => v.map(Some),
        };
        Some(match name.as_str() {
            "litestream_txid" => read_only(self.txid_text()),
            "litestream_lag" => read_only(self.lag().map(|l| l.to_string())),
            "litestream_time" => match value {
                None => self.time_text().map(Some),
                // Answers with the new time, as `PRAGMA journal_mode = …`
                // answers with the new mode. A pragma that answers nothing
                // has no column name, which some hosts (Python) cannot take.
                Some(v) => self
                    .set_time_text(v)
                    .and_then(|()| self.time_text())
                    .map(Some),
            },
            "litestream_hydration_progress" => read_only(self.replica().map(|r| {
                // One decimal, as the official extension prints it.
                format!("{:.1}", r.hydration_progress().unwrap_or(0.0))
            })),
            "litestream_hydration_file" => read_only(self.replica().map(|r| {
                r.hydration_file()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            })),
            "litestream_stats" => read_only(self.stats_text()),
            "litestream_max_requests_per_query" => match value {
                None => Ok(Some(self.budget().limit().unwrap_or(0).to_string())),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) => {
                        self.budget().set_limit(n);
                        Ok(Some(n.to_string()))
                    }
                    Err(_) => Err(Error::Usage(format!(
                        "PRAGMA {name} = {v:?}: give a number of storage requests (0: no budget)"
                    ))),
                },
            },
            "litestream_last_error" => read_only(Ok(self.last_error().unwrap_or_default())),
            // The panic-safety tests' fault hooks (`vfs::hooks`).
            #[cfg(feature = "test-hooks")]
            "litestream_test_panic" => match value.and_then(PanicHook::named) {
                Some(hook) => {
                    self.hooks().arm(hook);
                    Ok(Some("armed".into()))
                }
                None => panic!("test hook: panic inside the pragma callback"),
            },

            _ => return None,
        })
    }

    /// The TXID read, as 16 lowercase hex digits.
    pub fn txid_text(&self) -> Result<String> {
        Ok(self.snapshot()?.txid.to_string())
    }

    /// Parses `t` and travels there (`latest`: back to following).
    pub fn set_time_text(&self, t: &str) -> Result<()> {
        let target = parse_time(t, crate::replica::now_ms()).map_err(Error::Usage)?;
        self.set_time(target)
    }

    /// The RFC 3339 time of the state read (the target time while travelling).
    pub fn time_text(&self) -> Result<String> {
        if let Some(ms) = self.travel_time_ms()? {
            return Ok(format_rfc3339_nano(ms));
        }
        let snap = self.snapshot()?;

        Ok(if snap.timestamp_ms > 0 {
            format_rfc3339_nano(snap.timestamp_ms)
        } else {
            "latest".into()
        })
    }

    /// Whole seconds since the last successful poll; -1 before the first.
    pub fn lag(&self) -> Result<i64> {
        Ok(self.replica()?.lag_secs())
    }

    fn stats_text(&self) -> Result<String> {
        let r = self.replica()?;
        let snap = r.current();
        Ok(format!(
            "{}{}{} hydration_reads={}{} cache_bytes={} cache_budget={} txid={} pages={} index_bytes={} replicas={} pollers={}",
            r.io.stats.render(),
            r.io.local.render(),
            r.io.catalog
                .blobs()
                .map(|b| format!(" {}", b.render()))
                .unwrap_or_default(),
            r.hydration_requests(),
            r.warmup_render(),
            r.io.cache.weight(),
            r.io.cache.budget(),
            snap.txid,
            snap.page_count,
            snap.index_bytes(),
            crate::replica::registry().len(),
            crate::replica::running_pollers()
        ))
    }
}
