//! The ETag each file was last listed with, so that a read can be tied to
//! the version a snapshot was built from (`If-Match`), by the backends whose
//! listings name one (S3, GCS, Azure, OSS, WebDAV).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use super::FileId;
use super::error::{StorageError, StorageErrorKind};

/// How a read of one version goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Tie {
    /// With `If-Match` on this ETag.
    IfMatch(Arc<str>),
    /// Untied: the listing named no ETag for that version.
    Plain,
}

/// A file's version as last listed, and its ETag when the listing told one.
type Listed = (u64, Option<Arc<str>>);

/// Per file name: the version last listed, and its ETag when it had one.
#[derive(Debug, Default)]
pub struct ListedTags(Mutex<HashMap<FileId, Listed>>);

impl ListedTags {
    /// Records a listing: (file, version, ETag). With `all`, the listing
    /// holds every file of the replica, and names it lacks are forgotten
    /// (so the map holds what the replica holds, no more).
    pub fn remember<'a>(
        &self,
        listed: impl IntoIterator<Item = (FileId, u64, Option<&'a str>)>,
        all: bool,
    ) {
        let mut tags = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut seen = HashSet::new();
        for (id, version, tag) in listed {
            if all {
                seen.insert(id);
            }
            if tags.get(&id).is_none_or(|(v, _)| *v != version) {
                tags.insert(id, (version, tag.map(Arc::from)));
            }
        }
        if all {
            tags.retain(|id, _| seen.contains(id));
        }
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
            Some((v, Some(tag))) if *v == version => Ok(Tie::IfMatch(Arc::clone(tag))),
            Some((v, None)) if *v == version => Ok(Tie::Plain),
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
    /// from the first answer; after that, or when the listing named one,
    /// an answer with another ETag is the file written again: refused with
    /// `Changed`, like a 412, for servers that ignore `If-Match`.
    pub fn check_served(
        &self,
        backend: &'static str,
        describe: &str,
        file: FileId,
        version: u64,
        served: Option<&str>,
    ) -> Result<(), StorageError> {
        let Some(served) = served.filter(|_| version != 0) else {
            return Ok(());
        };
        let mut tags = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match tags.get_mut(&file) {
            Some((v, tag)) if *v == version => match tag {
                None => {
                    *tag = Some(Arc::from(served));
                    Ok(())
                }
                Some(t) if bare(t) == bare(served) => Ok(()),
                Some(t) => Err(StorageError::new(
                    backend,
                    StorageErrorKind::Changed,
                    format!(
                        "{describe} {file}: written again since it was listed (a read of ETag {t} \
                         was answered with ETag {served})"
                    ),
                )),
            },
            _ => Ok(()),
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
        t.remember([(id(1), 7, Some("\"a\"")), (id(2), 8, None)], true);
        assert_eq!(
            t.tie("t", "d", id(1), 7).unwrap(),
            Tie::IfMatch("\"a\"".into())
        );
        assert_eq!(t.tie("t", "d", id(2), 8).unwrap(), Tie::Plain);
        assert_eq!(t.tie("t", "d", id(3), 0).unwrap(), Tie::Plain);
        // Written again: a later listing names another version.
        t.remember([(id(1), 9, Some("\"b\""))], false);
        let e = t.tie("t", "d", id(1), 7).unwrap_err();
        assert_eq!(e.kind, StorageErrorKind::Changed, "{e}");
        assert_eq!(
            t.tie("t", "d", id(1), 9).unwrap(),
            Tie::IfMatch("\"b\"".into())
        );
        // Removed: a full listing without it.
        t.remember([(id(1), 9, Some("\"b\""))], true);
        let e = t.tie("t", "d", id(2), 8).unwrap_err();
        assert_eq!(e.kind, StorageErrorKind::NotFound, "{e}");
    }

    #[test]
    fn a_served_etag_is_learned_then_held_to() {
        let t = ListedTags::default();
        t.remember([(id(1), 7, None), (id(2), 8, Some("\"x\""))], true);
        // Learned from the first answer, then held to.
        t.check_served("t", "d", id(1), 7, Some("\"a\"")).unwrap();
        assert_eq!(
            t.tie("t", "d", id(1), 7).unwrap(),
            Tie::IfMatch("\"a\"".into())
        );
        t.check_served("t", "d", id(1), 7, Some("a")).unwrap();
        let e = t
            .check_served("t", "d", id(1), 7, Some("\"b\""))
            .unwrap_err();
        assert_eq!(e.kind, StorageErrorKind::Changed, "{e}");
        // A listed ETag is held to as well; no ETag answered says nothing.
        let e = t
            .check_served("t", "d", id(2), 8, Some("\"y\""))
            .unwrap_err();
        assert_eq!(e.kind, StorageErrorKind::Changed, "{e}");
        t.check_served("t", "d", id(2), 8, None).unwrap();
        t.check_served("t", "d", id(2), 0, Some("\"y\"")).unwrap();
    }
}
