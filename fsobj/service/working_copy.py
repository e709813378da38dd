"""The gate of a working copy: changes to an object's staged content run together (the
kernel writes pages back in parallel, and writers in place share one working copy), and a
commit runs alone, holding new changes and reads back until it is done."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import trio


class Gate:
    """Lets changes to one working copy run together, and a commit alone."""

    def __init__(self) -> None:
        self.changes = 0
        self.committing: trio.Event | None = None
        self._quiet: trio.Event | None = None
        self.staging = trio.Lock()  # creating or moving the staged content

    async def wait_for_commit(self) -> None:
        while self.committing is not None:
            await self.committing.wait()

    @contextlib.asynccontextmanager
    async def change(self) -> AsyncIterator[None]:
        await self.wait_for_commit()
        self.changes += 1
        try:
            yield
        finally:
            self.changes -= 1
            if not self.changes and self._quiet is not None:
                self._quiet.set()

    @contextlib.asynccontextmanager
    async def commit(self) -> AsyncIterator[None]:
        await self.wait_for_commit()
        done = self.committing = trio.Event()
        try:
            while self.changes:
                self._quiet = trio.Event()
                await self._quiet.wait()
            self._quiet = None
            yield
        finally:
            self.committing = None
            done.set()
