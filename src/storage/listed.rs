//! The ETag each file was last listed with, so that a read can be tied to
//! the version a snapshot was built from (`If-Match`), by the backends whose
//! listings name one (S3, GCS, Azure, OSS, WebDAV).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use super::error::{StorageError, StorageErrorKind};
use super::{FileId, FileInfo};

/// How a read of one version goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Tie {
    /// With `If-Match` on this ETag.
    IfMatch(Arc<str>),
    /// Untied: the listing named no ETag for that version.
    Plain,
}

/// What a listing without an ETag still tells of an object, in the terms a
/// read's answer tells them too: its size, and its modification time in
/// whole seconds (`Last-Modified` has no finer unit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub secs: i64,
    pub size: u64,
}

/// A file's version as last listed, its ETag when the listing told one, and
/// its stamp.
#[derive(Debug)]
struct Listed {
    version: u64,
    tag: Option<Arc<str>>,
    stamp: Option<Stamp>,
}

/// One file of a listing, with what ties a later read to it.
#[derive(Debug)]
pub struct Entry {
    pub info: FileInfo,
    /// The ETag the listing named, if any.
    pub tag: Option<String>,
    /// Size and modification second, where the backend checks a read's
    /// answer against them (S3, OSS).
    pub stamp: Option<Stamp>,
}

/// Per file name: the version last listed, and its ETag when it had one.
#[derive(Debug, Default)]
pub struct ListedTags(Mutex<HashMap<FileId, Listed>>);

impl ListedTags {
    /// Records a listing: (file, version, ETag, stamp). With `all`, the
    /// listing holds every file of the replica, and names it lacks are
    /// forgotten (so the map holds what the replica holds, no more).
    pub fn remember<'a>(
        &self,
        listed: impl IntoIterator<Item = (FileId, u64, Option<&'a str>, Option<Stamp>)>,
        all: bool,
    ) {
        let mut tags = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut seen = HashSet::new();
        for (id, version, tag, stamp) in listed {
            if all {
                seen.insert(id);
            }
            if tags.get(&id).is_none_or(|l| l.version != version) {
                let tag = tag.map(Arc::from);
                tags.insert(
                    id,
                    Listed {
                        version,
                        tag,
                        stamp,
                    },
                );
            }
        }
        if all {
            tags.retain(|id, _| seen.contains(id));
        }
    }

    /// A listing's files, sorted by id and each once, with their versions
    /// remembered (`all`: as in [`ListedTags::remember`]).
    pub fn record(&self, mut entries: Vec<Entry>, all: bool) -> Vec<FileInfo> {
        entries.sort_by_key(|e| e.info.id);
        entries.dedup_by_key(|e| e.info.id);
        self.remember(
            entries
                .iter()
                .map(|e| (e.info.id, e.info.version, e.tag.as_deref(), e.stamp)),
            all,
        );
        entries.into_iter().map(|e| e.info).collect()
    }

    /// Forgets every name but `ids` (a full listing assembled from
    /// several, each remembered on its own).
    pub fn keep_only(&self, ids: impl IntoIterator<Item = FileId>) {
        let keep: HashSet<FileId> = ids.into_iter().collect();
        let mut tags = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        tags.retain(|id, _| keep.contains(id));
    }

    /// How to read `file` as listed with `version`: fails with `Changed`
    /// when a later listing saw the name with another version (it was
    /// written again), and with `NotFound` when the last full listing did
    /// not show it (it was removed; whatever holds the name now is another
    /// file).
    pub fn tie(
        &self,
        backend: &'static str,
        describe: &str,
        file: FileId,
        version: u64,
    ) -> Result<Tie, StorageError> {
        if version == 0 {
            return Ok(Tie::Plain);
        }
        let tags = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match tags.get(&file) {
            Some(Listed {
                version: v,
                tag: Some(tag),
                ..
            }) if *v == version => Ok(Tie::IfMatch(Arc::clone(tag))),
            Some(Listed { version: v, .. }) if *v == version => Ok(Tie::Plain),
            Some(_) => Err(StorageError::new(
                backend,
                StorageErrorKind::Changed,
                format!(
                    "{describe} {file}: listed again with another version (written again since it was read)"
                ),
            )),
            None => Err(StorageError::new(
                backend,
                StorageErrorKind::NotFound,
                format!("{describe} {file}: no longer listed (removed since it was read)"),
            )),
        }
    }
}

impl ListedTags {
    /// Checks the ETag a server answered a read of `file` at `version`
    /// with. A listing that named no ETag (s3s-fs lists none) learns it
    /// from the first answer, once the answer's size and modification time
    /// agree with the listing's (a file written again since it was listed,
    /// before this process read it, differs in one or the other unless it
    /// was written in the same second with the same size); after that, or
    /// when the listing named one, an answer with another ETag is the file
    /// written again: refused with `Changed`, like a 412, for servers that
    /// ignore `If-Match`.
    pub fn check_served(
        &self,
        backend: &'static str,
        describe: &str,
        file: FileId,
        version: u64,
        served: Option<&str>,
        served_stamp: Option<Stamp>,
    ) -> Result<(), StorageError> {
        if version == 0 {
            return Ok(());
        }
        let changed = |why: String| {
            Err(StorageError::new(
                backend,
                StorageErrorKind::Changed,
                format!("{describe} {file}: written again since it was listed ({why})"),
            ))
        };
        let mut tags = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(listed) = tags.get_mut(&file).filter(|l| l.version == version) else {
            return Ok(());
        };
        match (&listed.tag, served) {
            (Some(t), Some(s)) if bare(t) != bare(s) => {
                changed(format!("a read of ETag {t} was answered with ETag {s}"))
            }
            (Some(_), _) | (None, None) => Ok(()),
            (None, Some(s)) => {
                if let (Some(l), Some(a)) = (listed.stamp, served_stamp)
                    && l != a
                {
                    return changed(format!(
                        "listed with {} bytes modified at {}, answered with {} bytes modified at {}",
                        l.size, l.secs, a.size, a.secs
                    ));
                }
                listed.tag = Some(Arc::from(s));
                Ok(())
            }
        }
    }
}

/// An ETag without its weak marker and quotes: a listing and a header may
/// quote the same tag differently.
fn bare(tag: &str) -> &str {
    tag.trim().trim_start_matches("W/").trim_matches('"')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::{FileName, Txid};
    use crate::storage::Level;

    fn id(n: u64) -> FileId {
        FileId {
            level: Level::L0,
            name: FileName {
                min: Txid(n),
                max: Txid(n),
            },
        }
    }

    #[test]
    fn reads_are_tied_to_the_listed_version() {
        let t = ListedTags::default();
        t.remember(
            [(id(1), 7, Some("\"a\""), None), (id(2), 8, None, None)],
            true,
        );
        assert_eq!(
            t.tie("t", "d", id(1), 7).unwrap(),
            Tie::IfMatch("\"a\"".into())
        );
        assert_eq!(t.tie("t", "d", id(2), 8).unwrap(), Tie::Plain);
        assert_eq!(t.tie("t", "d", id(3), 0).unwrap(), Tie::Plain);
        // Written again: a later listing names another version.
        t.remember([(id(1), 9, Some("\"b\""), None)], false);
        let e = t.tie("t", "d", id(1), 7).unwrap_err();
        assert_eq!(e.kind, StorageErrorKind::Changed, "{e}");
        assert_eq!(
            t.tie("t", "d", id(1), 9).unwrap(),
            Tie::IfMatch("\"b\"".into())
        );
        // Removed: a full listing without it.
        t.remember([(id(1), 9, Some("\"b\""), None)], true);
        let e = t.tie("t", "d", id(2), 8).unwrap_err();
        assert_eq!(e.kind, StorageErrorKind::NotFound, "{e}");
    }

    #[test]
    fn a_served_etag_is_learned_then_held_to() {
        let t = ListedTags::default();
        t.remember(
            [(id(1), 7, None, None), (id(2), 8, Some("\"x\""), None)],
            true,
        );
        // Learned from the first answer, then held to.
        t.check_served("t", "d", id(1), 7, Some("\"a\""), None)
            .unwrap();
        assert_eq!(
            t.tie("t", "d", id(1), 7).unwrap(),
            Tie::IfMatch("\"a\"".into())
        );
        t.check_served("t", "d", id(1), 7, Some("a"), None).unwrap();
        let e = t
            .check_served("t", "d", id(1), 7, Some("\"b\""), None)
            .unwrap_err();
        assert_eq!(e.kind, StorageErrorKind::Changed, "{e}");
        // A listed ETag is held to as well; no ETag answered says nothing.
        let e = t
            .check_served("t", "d", id(2), 8, Some("\"y\""), None)
            .unwrap_err();
        assert_eq!(e.kind, StorageErrorKind::Changed, "{e}");
        t.check_served("t", "d", id(2), 8, None, None).unwrap();
        t.check_served("t", "d", id(2), 0, Some("\"y\""), None)
            .unwrap();
    }

    #[test]
    fn a_first_answer_of_another_size_or_time_is_refused_not_learned() {
        let t = ListedTags::default();
        let listed = Stamp {
            secs: 100,
            size: 4000,
        };
        t.remember(
            [
                (id(1), 7, None, Some(listed)),
                (id(2), 8, None, Some(listed)),
            ],
            true,
        );
        // Written again after the listing, before any read: another size
        // or another second is the file written again, and its ETag is not
        // learned.
        let e = t
            .check_served(
                "t",
                "d",
                id(1),
                7,
                Some("\"n\""),
                Some(Stamp {
                    size: 4100,
                    ..listed
                }),
            )
            .unwrap_err();
        assert_eq!(e.kind, StorageErrorKind::Changed, "{e}");
        let e = t
            .check_served(
                "t",
                "d",
                id(1),
                7,
                Some("\"n\""),
                Some(Stamp {
                    secs: 101,
                    ..listed
                }),
            )
            .unwrap_err();
        assert_eq!(e.kind, StorageErrorKind::Changed, "{e}");
        assert_eq!(t.tie("t", "d", id(1), 7).unwrap(), Tie::Plain);
        // The listed object itself: learned, then held to.
        t.check_served("t", "d", id(2), 8, Some("\"o\""), Some(listed))
            .unwrap();
        assert_eq!(
            t.tie("t", "d", id(2), 8).unwrap(),
            Tie::IfMatch("\"o\"".into())
        );
    }
}
