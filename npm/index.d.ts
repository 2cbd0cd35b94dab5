/** Path of the litestream VFS library of this platform (same shape as the official `litestream-vfs`). */
export function getLoadablePath(): string;

/** Options: `name` labels the connection (no file is created); the rest are the extension's URI parameters. */
export interface ReplicaOptions {
  name?: string;
  poll_interval?: string;
  cache_size?: string;
  open_timeout?: string;
  [parameter: string]: string | number | boolean | undefined;
}

/** `file:NAME?vfs=litestream&mode=ro&replica_url=…`, percent-encoded. */
export function replicaUri(replicaUrl: string | null, options?: ReplicaOptions): string;

/** Load the library into an open connection (better-sqlite3, or node:sqlite with allowExtension). */
export function load(db: { loadExtension(path: string): unknown }): void;

/** Open a replica read-only with better-sqlite3 (>= 12.3). `Database` overrides `require('better-sqlite3')`. */
export function openReplica(replicaUrl: string, options?: ReplicaOptions & { Database?: unknown }): any;

/** Open a replica read-only with Node's built-in node:sqlite (Node >= 22.13). */
export function openReplicaNodeSqlite(replicaUrl: string, options?: ReplicaOptions): any;
