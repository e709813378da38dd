"""Group commit: the metadata records of commits that arrive while a transaction is in
flight are written together by the next one, in arrival order (one round trip and one
database transaction for many closes)."""

from __future__ import annotations

import dataclasses
import functools

import trio

from fsobj import measures
from fsobj.metadata.entries import Commit, Entry
from fsobj.metadata.store import MetadataStore
from fsobj.metadata.transactions import Before
from fsobj.refusals import Refused


@dataclasses.dataclass(eq=False, slots=True)
class _Record:
    """A commit waiting for its group's transaction."""

    entry: Entry
    commit: Commit
    synced: bool = False  # its transaction must be durable when it returns
    before: Before | None = None  # blocking, in the transaction's thread first
    done: bool = False
    previous: str | None = None
    error: Exception | None = None


class GroupCommit:
    def __init__(self, meta: MetadataStore):
        self.meta = meta
        self._lock = trio.Lock()
        self._waiting: list[_Record] = []

    async def record(
        self,
        entry: Entry,
        commit: Commit,
        synced: bool = False,
        before: Before | None = None,
    ) -> str | None:
        """Record `commit` in `entry`'s row with whatever else waits (MetadataStore.
        commit_many); returns the blob the row named before. A `synced` record makes its
        group's transaction durable by itself, and its `before` (the sync of its blob)
        runs in the same round trip, first; should it fail, so does its group."""
        record = _Record(entry, commit, synced, before)
        self._waiting.append(record)
        async with self._lock:
            if not record.done:
                batch, self._waiting = self._waiting, []
                measures.COMMIT_GROUP.observe(len(batch))
                befores = [r.before for r in batch if r.before is not None]
                try:
                    results = await self.meta.commit_many(
                        [(r.entry, r.commit) for r in batch],
                        any(r.synced for r in batch),
                        functools.partial(_each, befores) if befores else None,
                    )
                except Exception as error:
                    for r in batch:
                        r.done, r.error = True, error
                else:
                    for r, result in zip(batch, results, strict=True):
                        r.done = True
                        if isinstance(result, Refused | OSError):
                            r.error = result
                        else:
                            r.previous = result
        failed = record.error
        if isinstance(failed, Refused):
            raise failed.again()
        if isinstance(failed, OSError):  # one error object each: several tasks raise it
            raise OSError(failed.errno, failed.strerror or str(failed))
        if failed is not None:
            raise failed  # a bug: its traceback is logged at the front end's edge
        return record.previous


def _each(calls: list[Before]) -> None:
    for call in calls:
        call()
