'use strict';
// litestream-vfs-rs: the litestream VFS extension (Rust build) for Node.
//
// getLoadablePath() has the shape of the official `litestream-vfs` package:
// the path of the library of this platform, from the platform package npm
// installed beside this one (an optional dependency). On top of it:
//   replicaUri(url, options)               the SQLite URI that opens a replica
//   openReplica(url, options)              better-sqlite3 (>= 12.3), read-only
//   openReplicaNodeSqlite(url, options)    node:sqlite (Node >= 22.13), read-only
//   load(db)                               load the library into an open connection

const os = require('node:os');
const path = require('node:path');

const PLATFORM_PACKAGES = {
  'linux-x64': 'litestream-vfs-rs-linux-amd64',
  'linux-arm64': 'litestream-vfs-rs-linux-arm64',
  'darwin-x64': 'litestream-vfs-rs-darwin-amd64',
  'darwin-arm64': 'litestream-vfs-rs-darwin-arm64',
  'win32-x64': 'litestream-vfs-rs-windows-amd64',
  'win32-arm64': 'litestream-vfs-rs-windows-arm64',
};

const EXT_MAP = {
  linux: 'litestream-vfs.so',
  darwin: 'litestream-vfs.dylib',
  win32: 'litestream-vfs.dll',
};

function getLoadablePath() {
  const key = `${os.platform()}-${os.arch()}`;
  const pkg = PLATFORM_PACKAGES[key];
  if (!pkg) {
    throw new Error(`litestream-vfs-rs: unsupported platform ${key} (supported: ${Object.keys(PLATFORM_PACKAGES).join(', ')})`);
  }
  const searchPaths = [path.join(process.cwd(), 'node_modules'), ...module.paths];
  if (require.main) searchPaths.push(...require.main.paths);
  let resolved;
  try {
    resolved = require.resolve(`${pkg}/package.json`, { paths: searchPaths });
  } catch {
    throw new Error(`litestream-vfs-rs: the platform package ${pkg} is not installed. ` +
      `Run: npm install ${pkg} (npm skips optional dependencies with --omit=optional or --no-optional)`);
  }
  return path.join(path.dirname(resolved), EXT_MAP[os.platform()]);
}

function optionValue(value) {
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  return String(value);
}

// `file:NAME?vfs=litestream&mode=ro&replica_url=…`, every value percent-encoded.
// NAME only labels the connection: no local file is created. Other options
// are the extension's URI parameters (poll_interval: '500ms', cache_size: '64MB', …).
function replicaUri(replicaUrl, options = {}) {
  const { name = 'replica.db', ...params } = options;
  const query = [['vfs', 'litestream'], ['mode', 'ro']];
  if (replicaUrl != null) query.push(['replica_url', replicaUrl]);
  for (const [key, value] of Object.entries(params)) {
    if (value != null) query.push([key, optionValue(value)]);
  }
  return `file:${encodeURIComponent(name).replace(/%2F/g, '/')}?` + query.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
}

// Loads the library into an open connection (better-sqlite3, or node:sqlite
// opened with allowExtension). The `litestream` VFS then exists for the whole
// process: loading once is enough.
function load(db) {
  db.loadExtension(getLoadablePath());
}

const loadedInto = new Set();

function loadOnce(kind, open) {
  if (loadedInto.has(kind)) return;
  const loader = open();
  try {
    load(loader);
  } finally {
    loader.close();
  }
  loadedInto.add(kind);
}

const NO_URI = 'better-sqlite3 opened the replica as a plain file name: URI file names are off in this process. ' +
  'better-sqlite3 >= 12.3 turns them on when SQLITE_USE_URI=1 is in the environment before its first ' +
  'Database is created (set it in the shell, or before any `new Database`); older versions cannot choose a VFS.';

function openReplica(replicaUrl, options = {}) {
  const { Database: given, ...rest } = options;
  // better-sqlite3 reads it when its addon loads (at the first `new Database`).
  if (process.env.SQLITE_USE_URI === undefined) process.env.SQLITE_USE_URI = '1';
  const Database = given || require('better-sqlite3');
  loadOnce(Database, () => new Database(':memory:'));
  try {
    return new Database(replicaUri(replicaUrl, rest), { readonly: true, fileMustExist: true });
  } catch (error) {
    if (!urisWork(Database)) throw new Error(NO_URI, { cause: error });
    throw error;
  }
}

// With URIs on, an unknown vfs= is "no such vfs"; with them off, the name is a
// file that does not exist (read-only: nothing is created).
function urisWork(Database) {
  try {
    new Database('file:litestream-uri-probe.db?vfs=litestream-uri-probe', { readonly: true, fileMustExist: true }).close();
  } catch (error) {
    return /no such vfs/.test(String(error && error.message));
  }
  return true;
}

function nodeSqlite() {
  let sqlite;
  try {
    sqlite = require('node:sqlite');
  } catch {
    sqlite = null;
  }
  if (!sqlite || typeof sqlite.DatabaseSync.prototype.loadExtension !== 'function') {
    throw new Error(`litestream-vfs-rs: node:sqlite with loadExtension() needs Node >= 22.13 (this is ${process.version}); ` +
      'use openReplica() with better-sqlite3 instead');
  }
  return sqlite;
}

function openReplicaNodeSqlite(replicaUrl, options = {}) {
  const { DatabaseSync } = nodeSqlite();
  loadOnce(DatabaseSync, () => new DatabaseSync(':memory:', { allowExtension: true }));
  const uri = replicaUri(replicaUrl, options);
  const errors = [];
  // A string is opened as it is; a URL object keeps its query for SQLite.
  for (const name of [uri, new URL(uri)]) {
    let db;
    try {
      db = new DatabaseSync(name, { readOnly: true });
      db.prepare('SELECT litestream_txid()').get();
      return db;
    } catch (error) {
      errors.push(String(error && error.message));
      if (db) db.close();
    }
  }
  throw new Error(`litestream-vfs-rs: node:sqlite could not open the replica through the VFS: ${errors.join('; ')}`);
}

module.exports = { getLoadablePath, replicaUri, load, openReplica, openReplicaNodeSqlite };
