"""The mount itself: the FUSE handlers over the core, connected to the kernel."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pyfuse3

from fsobj.fuse import edge as fuse_edge
from fsobj.fuse.operations import Operations
from fsobj.service.core import Service

log = logging.getLogger(__name__)

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
        self.mountpoint = mountpoint

    def _listed(self) -> bool:
        """Whether the kernel still lists the mount."""
        target = os.path.realpath(self.mountpoint)
        with open("/proc/self/mounts") as mounts:
            return any(line.split()[1] == target for line in mounts)

    async def serve(self) -> None:
        try:
            await pyfuse3.main()
        except ConnectionAbortedError:
            # The kernel ended the connection itself (`umount -f`, an abort through
            # /sys/fs/fuse/connections): no bug of ours, and nothing is lost, as at any
            # unmount what is open is committed on the way out.
            log.warning("the kernel aborted the FUSE connection: unmounting")

    def terminate(self) -> None:
        pyfuse3.terminate()

    def close(self, unmount: bool) -> None:
        """After fusermount -u the kernel has already unmounted; otherwise `unmount`."""
        pyfuse3.close(unmount=unmount)
        if self._listed():
            # libfuse leaves the mount of a connection that was aborted (`umount -f`, an
            # abort through /sys/fs/fuse/connections): dead, it goes too.
            subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], check=False)
        # The kernel connection is gone: the last commits must not notify it.
        self.operations.kernel.connected = False
