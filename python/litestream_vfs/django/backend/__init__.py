"""Django database backend for Litestream VFS replicas: the SQLite backend,
with the extension loaded before the first connection opens."""
