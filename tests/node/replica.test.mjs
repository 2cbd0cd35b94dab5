// better-sqlite3 reading a Litestream replica through the litestream-vfs library.
//
// better-sqlite3 compiles SQLite with SQLITE_USE_URI=0 and opens databases
// without SQLITE_OPEN_URI, so "file:...?vfs=litestream" is a plain file name
// to it: nothing selects the VFS. Since 12.3.0 it turns URI file names on for
// the whole process when SQLITE_USE_URI=1 is in the environment when the
// addon loads. That is the way that works (snippet in docs/INSTALL.md).
//
// LITESTREAM_VFS_LIB: the library (default target/release/liblitestream_vfs.so).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const lib = process.env.LITESTREAM_VFS_LIB ?? path.join(root, 'target', 'release', 'liblitestream_vfs.so');
const fixture = path.join(root, 'tests', 'fixtures', 'basic-4k');
const newest = JSON.parse(readFileSync(path.join(fixture, 'manifest.json'), 'utf8')).history.at(-1);

function replicaCopy(t) {
  const dir = mkdtempSync(path.join(tmpdir(), 'lsvfs-node-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(path.join(fixture, 'replica'), path.join(dir, 'replica'), { recursive: true });
  return { dir, url: pathToFileURL(path.join(dir, 'replica')).href };
}

// Runs `code` in a fresh node (the URI setting is per process, read when the
// addon loads) and returns its JSON output.
function runNode(code, env, cwd) {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', code], {
    cwd, env: { ...process.env, ...env }, encoding: 'utf8',
  });
  return JSON.parse(out);
}

const resolveFrom = JSON.stringify(pathToFileURL(path.join(here, 'package.json')).href);
const prelude = `
  import { createRequire } from 'node:module';
  const require = createRequire(${resolveFrom});
`;

test('SQLITE_USE_URI=1: load the library, open the replica by URI, query it', (t) => {
  const { dir, url } = replicaCopy(t);
  const result = runNode(prelude + `
    const Database = require('better-sqlite3');
    const loader = new Database(':memory:');
    loader.loadExtension(process.env.LIB);   // registers the "litestream" VFS for the process
    const uri = 'file:replica.db?vfs=litestream&mode=ro&replica_url=' + encodeURIComponent(process.env.URL);
    const db = new Database(uri, { readonly: true });
    const seed = db.prepare('SELECT count(*) AS n FROM seed').get().n;
    const { txid, lag } = db.prepare('SELECT litestream_txid() AS txid, litestream_lag() AS lag').get();
    let write;
    try { db.exec('CREATE TABLE nope(x)'); write = 'succeeded'; } catch (e) { write = e.code + ': ' + e.message; }
    console.log(JSON.stringify({ seed, txid, lag, write, version: require('better-sqlite3/package.json').version }));
  `, { SQLITE_USE_URI: '1', LIB: lib, URL: url }, dir);
  assert.equal(result.seed, newest.tables.seed);
  assert.match(result.txid, /^[0-9a-f]{16}$/);
  assert.ok(result.lag >= -1);
  assert.match(result.write, /^SQLITE_READONLY/);
});

test('without SQLITE_USE_URI the URI is a plain file name and no VFS is used', (t) => {
  const { dir, url } = replicaCopy(t);
  const result = runNode(prelude + `
    const Database = require('better-sqlite3');
    new Database(':memory:').loadExtension(process.env.LIB);
    const uri = 'file:replica.db?vfs=litestream&mode=ro&replica_url=' + encodeURIComponent(process.env.URL);
    let error = null;
    try { new Database(uri, { readonly: true, fileMustExist: true }); } catch (e) { error = e.code; }
    console.log(JSON.stringify({ error }));
  `, { SQLITE_USE_URI: '', LIB: lib, URL: url }, dir);
  assert.equal(result.error, 'SQLITE_CANTOPEN');
});
