"""The mount itself: the FUSE handlers over the core, connected to the kernel."""

from __future__ import annotations

from pathlib import Path

import pyfuse3

from fsobj.fuse import edge as fuse_edge
from fsobj.fuse.operations import Operations
from fsobj.service.core import Service

# How long the kernel may keep entries and attributes. Every change reaches the store
# through this mount, and what changes behind the kernel's back (commits, grants) is
# invalidated, so this bounds only what a missed invalidation could cost.
CACHE_SECONDS = 5.0


def mount_options(store: Path, private: bool) -> set[str]:
    # pyfuse3's defaults include default_permissions: the kernel checks mode bits and
    # ACLs (a bucket's grants are its directory's ACL: see operations).
    options = set(pyfuse3.default_options)
    fsname = str(store).replace("\\", "\\\\").replace(",", "\\,")
    # nodev: a device node stored here is never opened as its device (nosuid: a
    # set-user-ID program here does not run with its owner's rights).
    options |= {f"fsname={fsname}", "subtype=fsobj", "nodev", "nosuid"}
    if not private:
        options.add("allow_other")
    return options


class KernelMount:
    """Mounted at `mountpoint` once made (RuntimeError if the kernel refuses); serves
    requests in `serve` until unmounted or `terminate`d; `close` ends it."""

    def __init__(self, core: Service, store: Path, mountpoint: Path, private: bool) -> None:
        fuse_edge.quiet_abandoned_replies()
        self.operations = Operations(core, CACHE_SECONDS)
        pyfuse3.init(self.operations, str(mountpoint), mount_options(store, private))
        self.operations.kernel.connected = True

    async def serve(self) -> None:
        await pyfuse3.main()

    def terminate(self) -> None:
        pyfuse3.terminate()

    def close(self, unmount: bool) -> None:
        """After fusermount -u the kernel has already unmounted; otherwise `unmount`."""
        pyfuse3.close(unmount=unmount)
        # The kernel connection is gone: the last commits must not notify it.
        self.operations.kernel.connected = False
