//! The [`Storage`] adapter over an `object_store` client, shared by S3, GCS
//! and Azure Blob. The backends differ only in how the client is built and
//! in where a level's files live (see [`Layout`]).

use std::ops::Range;
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use super::error::{StorageError, StorageErrorKind};
use super::listed::{Entry, ListedTags, Stamp, Tie};
pub use super::object_error::Context;
use super::{BoxFuture, Chunks, FileId, FileInfo, Level, Storage};
use crate::ltx::{FileName, parse_name};

/// Where a level's files live under the replica path, as Litestream writes
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `<path>/<level as 4 lowercase hex digits>/<name>` (S3).
    Hex,
    /// `<path>/ltx/<level in decimal>/<name>` (GCS, Azure, file, SFTP).
    Decimal,
}

impl Layout {
    /// The folder of `level` under `prefix` (which has no slashes at its ends).
    pub fn level_dir(self, prefix: &str, level: Level) -> String {
        let dir = match self {
            Layout::Hex => format!("{:04x}", level.get()),
            Layout::Decimal => format!("ltx/{}", level.get()),
        };
        if prefix.is_empty() {
            dir
        } else {
            format!("{prefix}/{dir}")
        }
    }
}

#[derive(Debug)]
pub struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    layout: Layout,
    cx: Context,
    /// The ETag each file was last listed with: what a read tied to that
    /// version sends as `If-Match`.
    tags: ListedTags,
}

impl ObjectStorage {
    /// Builds the client (`build` returns its error unchanged) and wraps
    /// it: the last step every object_store backend shares. A build error
    /// names the service and the redacted URL, with every secret scrubbed.
    pub fn build<S: ObjectStore>(
        service: &str,
        prefix: String,
        layout: Layout,
        cx: Context,
        build: impl FnOnce() -> object_store::Result<S>,
    ) -> Result<Arc<dyn Storage>, StorageError> {
        let store = build().map_err(|e| {
            StorageError::new(
                cx.backend,
                StorageErrorKind::Config,
                cx.secrets
                    .scrub(&format!("cannot set up {service} for {}: {e}", cx.describe)),
            )
        })?;
        Ok(Arc::new(ObjectStorage::new(
            Arc::new(store),
            prefix,
            layout,
            cx,
        )))
    }

    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: String,
        layout: Layout,
        cx: Context,
    ) -> ObjectStorage {
        ObjectStorage {
            store,
            prefix,
            layout,
            cx,
            tags: ListedTags::default(),
        }
    }

    /// A ranged read tied to `version`: `If-Match` with the ETag it was
    /// listed with. A 412 (the object was written again) is
    /// [`StorageErrorKind::Changed`]; so is a version a later listing
    /// already saw replaced (no request is made then).
    async fn read_tied(
        &self,
        file: FileId,
        version: u64,
        range: Range<u64>,
    ) -> Result<Vec<u8>, StorageError> {
        let path = self.path(file);
        let got = self.get_tied(file, version, range.clone()).await?;
        let bytes = got
            .bytes()
            .await
            .map_err(|e| self.error("read", path.as_ref(), &e))?;
        self.check_len(file, &range, bytes.len())?;
        Ok(Vec::from(bytes))
    }

    /// [`ObjectStorage::read_tied`] as the body arrives: the answer's
    /// headers are checked, then its chunks handed over one by one (a
    /// body of another length than the range ends in an error).
    async fn chunks_tied(
        &self,
        file: FileId,
        version: u64,
        range: Range<u64>,
    ) -> Result<Chunks<'_>, StorageError> {
        let got = self.get_tied(file, version, range.clone()).await?;
        let want = range.end.saturating_sub(range.start);
        let state = (got.into_stream(), 0u64, false);
        let chunks = futures_util::stream::unfold(state, move |(mut body, seen, done)| {
            let range = range.clone();
            async move {
                if done {
                    return None;
                }
                let fail = |e| Some((Err(e), (futures_util::stream::empty().boxed(), seen, true)));
                match body.next().await {
                    Some(Ok(chunk)) => {
                        let seen = seen.saturating_add(chunk.len() as u64);
                        if seen > want {
                            let len = usize::try_from(seen).unwrap_or(usize::MAX);
                            return fail(self.check_len(file, &range, len).err()?);
                        }
                        Some((Ok(chunk), (body, seen, false)))
                    }
                    Some(Err(e)) => fail(self.error("read", self.path(file).as_ref(), &e)),
                    None if seen == want => None,
                    None => {
                        let len = usize::try_from(seen).unwrap_or(usize::MAX);
                        fail(self.check_len(file, &range, len).err()?)
                    }
                }
            }
        });
        Ok(Box::pin(chunks))
    }

    /// The answer to a ranged GET tied to `version` (see
    /// [`ObjectStorage::read_tied`]), its headers checked, its body unread.
    async fn get_tied(
        &self,
        file: FileId,
        version: u64,
        range: Range<u64>,
    ) -> Result<object_store::GetResult, StorageError> {
        let if_match = match self
            .tags
            .tie(self.cx.backend, &self.cx.describe, file, version)?
        {
            Tie::IfMatch(tag) => Some(tag.to_string()),
            Tie::Plain => None,
        };
        let path = self.path(file);
        let opts = GetOptions {
            if_match,
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&path, opts)
            .await
            .map_err(|e| self.error("read", path.as_ref(), &e))?;
        if self.checks_served_etag() {
            // Also where `If-Match` was sent: a server that ignores it
            // (fake-gcs-server, s3s-fs) answers with the object's new ETag.
            self.tags.check_served(
                self.cx.backend,
                &self.cx.describe,
                file,
                version,
                got.meta.e_tag.as_deref(),
                Some(stamp(&got.meta)),
            )?;
        }
        Ok(got)
    }

    /// Whether the ETag a read is answered with is held to the listed (or
    /// first answered) one: on every object store, whose listings and GETs
    /// name an object by the same tag, up to quotes (compared without
    /// them): S3 and OSS; GCS, whose XML listing and `ETag` header both
    /// carry the object's MD5 (fake-gcs-server lists it bare and quotes
    /// the header, and ignores `If-Match`); Azure, which lists
    /// `0x8D…` and answers `"0x8D…"`. Some servers ignore `If-Match`
    /// (s3s-fs and fake-gcs-server do, and s3s-fs lists no ETag at all):
    /// the answer's tag is what ties their reads to the listed version.
    fn checks_served_etag(&self) -> bool {
        matches!(self.cx.backend, "s3" | "oss" | "gs" | "abs")
    }

    async fn read_plain(&self, file: FileId, range: Range<u64>) -> Result<Vec<u8>, StorageError> {
        let path = self.path(file);
        let bytes = self
            .store
            .get_range(&path, range.clone())
            .await
            .map_err(|e| self.error("read", path.as_ref(), &e))?;
        self.check_len(file, &range, bytes.len())?;
        Ok(Vec::from(bytes))
    }

    fn path(&self, file: FileId) -> Path {
        Path::from(format!(
            "{}/{}",
            self.layout.level_dir(&self.prefix, file.level),
            file.name
        ))
    }

    async fn list_level(
        &self,
        level: Level,
        after: Option<FileName>,
    ) -> Result<Vec<FileInfo>, StorageError> {
        let dir = Path::from(self.layout.level_dir(&self.prefix, level));
        let depth = dir.parts().count() + 1;
        // Start after the newest known file: S3 and GCS honour it exactly,
        // Azure includes the offset itself, and nothing guarantees order, so
        // the result is filtered and sorted below all the same.
        let mut stream = match after {
            Some(a) => self
                .store
                .list_with_offset(Some(&dir), &Path::from(format!("{dir}/{a}"))),
            None => self.store.list(Some(&dir)),
        };
        let mut files = Vec::new();
        while let Some(item) = stream.next().await {
            let meta = item.map_err(|e| self.error("list", dir.as_ref(), &e))?;
            if meta.location.parts().count() != depth {
                continue; // something in a sub-folder: not ours
            }
            let Some(name) = meta.location.filename().and_then(parse_name) else {
                continue;
            };
            if after.is_some_and(|a| name <= a) {
                continue;
            }
            files.push(entry(FileId { level, name }, meta));
        }
        Ok(self.tags.record(files, false))
    }

    /// Every file of every level in one listing of the replica's folder
    /// (paged by the service past 1,000 keys).
    async fn list_everything(&self) -> Result<Vec<FileInfo>, StorageError> {
        let root = match self.layout {
            Layout::Hex => self.prefix.clone(),
            Layout::Decimal if self.prefix.is_empty() => "ltx".to_owned(),
            Layout::Decimal => format!("{}/ltx", self.prefix),
        };
        let root = Path::from(root);
        let depth = root.parts().count() + 2;
        let mut stream = self.store.list(Some(&root));
        let mut files = Vec::new();
        while let Some(item) = stream.next().await {
            let meta = item.map_err(|e| self.error("list", root.as_ref(), &e))?;
            let parts: Vec<_> = meta.location.parts().collect();
            if parts.len() != depth {
                continue;
            }
            let (Some(dir), Some(file)) = (parts.get(depth - 2), parts.get(depth - 1)) else {
                continue;
            };
            let level = match self.layout {
                Layout::Hex if dir.as_ref().len() == 4 => u8::from_str_radix(dir.as_ref(), 16).ok(),
                Layout::Decimal => dir.as_ref().parse::<u8>().ok(),
                Layout::Hex => None,
            };
            let (Some(level), Some(name)) = (level.and_then(Level::new), parse_name(file.as_ref()))
            else {
                continue;
            };
            files.push(entry(FileId { level, name }, meta));
        }
        Ok(self.tags.record(files, true))
    }

    fn check_len(&self, file: FileId, range: &Range<u64>, got: usize) -> Result<(), StorageError> {
        let want = range.end.saturating_sub(range.start);
        if u64::try_from(got).ok() == Some(want) {
            return Ok(());
        }
        Err(StorageError::new(
            self.cx.backend,
            StorageErrorKind::Other,
            format!(
                "{} {file}: asked for bytes {}..{}, got {got} bytes",
                self.cx.describe, range.start, range.end
            ),
        ))
    }

    fn error(&self, op: &str, what: &str, e: &object_store::Error) -> StorageError {
        super::object_error::classify(&self.cx, op, what, e)
    }
}

/// A listed object as the listing's [`Entry`].
fn entry(id: FileId, meta: object_store::ObjectMeta) -> Entry {
    Entry {
        info: FileInfo {
            id,
            size: meta.size,
            version: object_version(&meta),
        },
        stamp: Some(stamp(&meta)),
        tag: meta.e_tag,
    }
}

/// What a listing and a read's answer both tell of an object: its size and
/// its modification time in whole seconds.
fn stamp(meta: &object_store::ObjectMeta) -> Stamp {
    Stamp {
        secs: meta.last_modified.timestamp(),
        size: meta.size,
    }
}

/// An object's version: its ETag (S3, GCS and Azure all list one), else its
/// version id, else its modification time.
fn object_version(meta: &object_store::ObjectMeta) -> u64 {
    match meta.e_tag.as_deref().or(meta.version.as_deref()) {
        Some(tag) => super::version_of(tag.as_bytes()),
        None => super::version_of(&meta.last_modified.timestamp_millis().to_le_bytes()),
    }
}

impl Storage for ObjectStorage {
    fn describe(&self) -> &str {
        &self.cx.describe
    }

    fn list(
        &self,
        level: Level,
        after: Option<FileName>,
    ) -> BoxFuture<'_, Result<Vec<FileInfo>, StorageError>> {
        Box::pin(self.list_level(level, after))
    }

    fn list_all(&self) -> BoxFuture<'_, Result<Vec<FileInfo>, StorageError>> {
        Box::pin(self.list_everything())
    }

    fn list_all_requests(&self) -> u64 {
        1
    }

    fn prewarm(&self) -> BoxFuture<'_, ()> {
        // A HEAD of a key that does not exist: a cheap 404 whose only
        // purpose is the pooled connection it leaves behind.
        let probe = Path::from(format!("{}/.litestream-vfs-connect", self.prefix));
        Box::pin(async move {
            let _ = self.store.head(&probe).await;
        })
    }

    fn read(
        &self,
        file: FileId,
        range: Range<u64>,
    ) -> BoxFuture<'_, Result<Vec<u8>, StorageError>> {
        Box::pin(self.read_plain(file, range))
    }

    fn read_version(
        &self,
        file: FileId,
        version: u64,
        range: Range<u64>,
    ) -> BoxFuture<'_, Result<Vec<u8>, StorageError>> {
        if version == 0 {
            return Box::pin(self.read_plain(file, range));
        }
        Box::pin(self.read_tied(file, version, range))
    }

    fn streams_bodies(&self) -> bool {
        true
    }

    fn read_version_chunks(
        &self,
        file: FileId,
        version: u64,
        range: Range<u64>,
    ) -> BoxFuture<'_, Result<Chunks<'_>, StorageError>> {
        if version == 0 {
            return Box::pin(
                async move { Ok(super::one_chunk(self.read_plain(file, range).await?)) },
            );
        }
        Box::pin(self.chunks_tied(file, version, range))
    }

    fn read_ranges(
        &self,
        file: FileId,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StorageError>> {
        Box::pin(async move {
            let path = self.path(file);
            // object_store coalesces nearby ranges and fetches the rest
            // concurrently.
            let parts = self
                .store
                .get_ranges(&path, &ranges)
                .await
                .map_err(|e| self.error("read", path.as_ref(), &e))?;
            let mut out = Vec::with_capacity(parts.len());
            for (bytes, range) in parts.into_iter().zip(&ranges) {
                self.check_len(file, range, bytes.len())?;
                out.push(Vec::from(bytes));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::Txid;
    use crate::storage::secrets::Secrets;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    fn name(min: u64, max: u64) -> FileName {
        FileName {
            min: Txid(min),
            max: Txid(max),
        }
    }

    fn storage(layout: Layout) -> (Arc<InMemory>, ObjectStorage) {
        storage_of("test", layout)
    }

    fn storage_of(backend: &'static str, layout: Layout) -> (Arc<InMemory>, ObjectStorage) {
        let mem = Arc::new(InMemory::new());
        let cx = Context {
            backend,
            describe: "test://b/db".into(),
            bucket: "b".into(),
            credential_hint: "nothing",
            secrets: Secrets::new(),
        };
        let s = ObjectStorage::new(mem.clone(), "db".into(), layout, cx);
        (mem, s)
    }

    async fn put(mem: &InMemory, key: &str, body: &'static [u8]) {
        mem.put(&Path::from(key), PutPayload::from_static(body))
            .await
            .unwrap();
    }

    #[test]
    fn level_dirs() {
        assert_eq!(Layout::Hex.level_dir("a/b", Level::SNAPSHOT), "a/b/0009");
        assert_eq!(Layout::Decimal.level_dir("", Level::L0), "ltx/0");
    }

    #[tokio::test]
    async fn lists_the_whole_replica_in_one_listing() {
        for (layout, dirs) in [
            (Layout::Hex, ["0000", "0001", "0009"]),
            (Layout::Decimal, ["ltx/0", "ltx/1", "ltx/9"]),
        ] {
            let (mem, s) = storage(layout);
            for (dir, n) in dirs.iter().zip([2u64, 1, 1]) {
                put(&mem, &format!("db/{dir}/{}", name(1, n)), b"x").await;
            }
            put(&mem, "db/0000/junk.txt", b"x").await;
            put(
                &mem,
                "db/ltx/0/sub/0000000000000004-0000000000000004.ltx",
                b"x",
            )
            .await;
            put(&mem, "db/other/0000000000000005-0000000000000005.ltx", b"x").await;
            let all = s.list_all().await.unwrap();
            let got: Vec<_> = all.iter().map(|f| (f.id.level.get(), f.id.name)).collect();
            assert_eq!(
                got,
                vec![(0, name(1, 2)), (1, name(1, 1)), (9, name(1, 1))],
                "{layout:?}"
            );
            assert_eq!(s.list_all_requests(), 1);
        }
    }

    #[tokio::test]
    async fn lists_filters_and_reads() {
        let (mem, s) = storage(Layout::Hex);
        put(&mem, "db/0000/0000000000000002-0000000000000002.ltx", b"22").await;
        put(&mem, "db/0000/0000000000000001-0000000000000001.ltx", b"1").await;
        put(
            &mem,
            "db/0000/0000000000000003-0000000000000003.ltx",
            b"333",
        )
        .await;
        put(&mem, "db/0000/junk.txt", b"x").await;
        put(
            &mem,
            "db/0000/sub/0000000000000004-0000000000000004.ltx",
            b"x",
        )
        .await;
        put(&mem, "db/0001/0000000000000001-0000000000000003.ltx", b"x").await;

        let all = s.list(Level::L0, None).await.unwrap();
        let names: Vec<_> = all.iter().map(|f| f.id.name).collect();
        assert_eq!(names, vec![name(1, 1), name(2, 2), name(3, 3)]);
        assert_eq!(all[2].size, 3);

        let after = s.list(Level::L0, Some(name(2, 2))).await.unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].id.name, name(3, 3));

        let id = FileId {
            level: Level::L0,
            name: name(3, 3),
        };
        assert_eq!(s.read(id, 1..3).await.unwrap(), b"33");
        assert_eq!(
            s.read_ranges(id, vec![0..1, 2..3]).await.unwrap(),
            vec![b"3".to_vec(), b"3".to_vec()]
        );
        let missing = FileId {
            level: Level::L0,
            name: name(9, 9),
        };
        assert_eq!(
            s.read(missing, 0..1).await.unwrap_err().kind,
            StorageErrorKind::NotFound
        );
    }

    /// A listing that named no ETag ties no read by `If-Match`: the first
    /// answer's ETag is held to (what catches a server that ignores
    /// `If-Match`, whose answer is all there is to check), on every
    /// object-store backend.
    #[tokio::test]
    async fn every_object_store_holds_a_read_to_the_tag_it_was_answered_with() {
        for backend in ["s3", "oss", "gs", "abs"] {
            let (mem, s) = storage_of(backend, Layout::Decimal);
            let key = "db/ltx/0/0000000000000001-0000000000000001.ltx";
            put(&mem, key, b"old bytes").await;
            let listed = s.list(Level::L0, None).await.unwrap()[0];
            // As a server that lists no ETag (s3s-fs) would have.
            s.tags.keep_only([]);
            s.tags
                .remember([(listed.id, listed.version, None, None)], false);
            let first = s.read_version(listed.id, listed.version, 0..3).await;
            assert_eq!(first.unwrap(), b"old", "{backend}");
            put(&mem, key, b"new bytes").await;
            let e = s
                .read_version(listed.id, listed.version, 0..3)
                .await
                .expect_err("the new bytes were served for the old version");
            assert_eq!(e.kind, StorageErrorKind::Changed, "{backend}: {e}");
            // `Changed` is what `Error::is_rewritten` maps to the reset.
            assert!(e.to_string().contains("written again"), "{e}");
        }
    }
}
