from django.apps import AppConfig


class LitestreamVfsConfig(AppConfig):
    """Only needed for the `litestream_vfs_status` management command."""

    name = "litestream_vfs.django"
    label = "litestream_vfs"
    verbose_name = "Litestream VFS read replicas"
