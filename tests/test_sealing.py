"""Sealed blobs (encryption at rest) in the data store, in-process: what is written is
ciphertext, reads give the content back, keys rotate, and damage or a wrong key is an
error, never wrong bytes."""

import concurrent.futures
import os
import stat
from pathlib import Path

import pytest

from fsobj.datastore.blob_file import CHUNK, DamagedBlob, blob_file_problem
from fsobj.datastore.sealing import HEADER, Seal, sealed_size
from fsobj.datastore.store import DataStore, new_object_id
from fsobj.refusals import Reason, Refused

SIZES = [0, 1, 4096, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + CHUNK // 2]


async def _commit(data: DataStore, content: bytes, seal: Seal | None) -> str:
    staging = await data.stage(None)
    staging.write(0, content)
    if len(content) > 64 * 1024:
        staging.spill(data.staging_path())
    object_id = new_object_id()
    await data.commit(staging, object_id, True, seal)
    return object_id


def _content(size: int) -> bytes:
    return (b"the quick brown fox " * (size // 20 + 1))[:size]


@pytest.mark.parametrize("size", SIZES)
async def test_a_sealed_blob_holds_no_content_and_reads_back_whole(tmp_path, size):
    data = DataStore(tmp_path)
    content = _content(size)
    object_id = await _commit(data, content, Seal())
    stored = data.blob_path(object_id).read_bytes()
    assert len(stored) == sealed_size(size) > size
    assert b"quick brown" not in stored
    assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o600
    blob = data.open_blob(object_id, size)
    try:
        assert blob.sealed
        assert blob.read(size + 10, 0) == content
        assert blob.read(5000, max(size - 3000, 0)) == content[max(size - 3000, 0) :]
        assert blob.read(100, CHUNK - 50) == content[CHUNK - 50 : CHUNK + 50]
        copy = await data.stage(blob)  # copy on write opens it too
        assert copy.read(0, size + 1) == content
        copy.close()
    finally:
        blob.close()
    assert blob_file_problem(data.blob_path(object_id), size, b"") == ""


async def test_a_customer_key_opens_only_its_own_blobs(tmp_path):
    data = DataStore(tmp_path)
    key, other = os.urandom(32), os.urandom(32)
    object_id = await _commit(data, b"secret", Seal(customer_key=key))
    with pytest.raises(Refused) as without:
        data.open_blob(object_id, 6)
    assert without.value.reason is Reason.NEEDS_KEY
    with pytest.raises(Refused) as wrong:
        data.open_blob(object_id, 6, other)
    assert wrong.value.reason is Reason.WRONG_KEY
    blob = data.open_blob(object_id, 6, key)
    assert blob.read(6, 0) == b"secret"
    blob.close()
    plain = await _commit(data, b"plain", None)
    with pytest.raises(Refused) as needless:
        data.open_blob(plain, 5, key)
    assert needless.value.reason is Reason.INVALID
    assert not (tmp_path / "keys").exists()  # no store key was needed


async def test_rotated_keys_seal_new_blobs_and_still_open_old_ones(tmp_path):
    data = DataStore(tmp_path)
    old = await _commit(data, b"before", Seal())
    first = data.keys.ids()
    rotated = DataStore(tmp_path).keys.rotate()  # as the command line does, beside a daemon
    new = await _commit(data, b"after", Seal())
    assert data.keys.ids() == [*first, rotated]
    assert rotated.encode() in data.blob_path(new).read_bytes()[:HEADER]
    assert first[0].encode() in data.blob_path(old).read_bytes()[:HEADER]
    for object_id, content in ((old, b"before"), (new, b"after")):
        blob = data.open_blob(object_id, len(content))
        assert blob.read(10, 0) == content
        blob.close()
    # A key taken out of the file: its blobs are damaged as far as reads can tell.
    lines = (tmp_path / "keys").read_text().splitlines()
    kept = [line for line in lines if not line.startswith(first[0])]
    (tmp_path / "keys").write_text("\n".join(kept))
    with pytest.raises(DamagedBlob, match="not in"):
        DataStore(tmp_path).open_blob(old, 6)


async def test_damage_to_a_sealed_blob_is_found_without_its_key(tmp_path):
    data = DataStore(tmp_path)
    size = CHUNK + 100
    object_id = await _commit(data, _content(size), Seal(customer_key=bytes(32)))
    path = data.blob_path(object_id)
    os.chmod(path, 0o600)
    with open(path, "r+b") as blob_file:
        blob_file.seek(HEADER + CHUNK + 20 + 7)  # in the second chunk
        byte = blob_file.read(1)
        blob_file.seek(-1, os.SEEK_CUR)
        blob_file.write(bytes([byte[0] ^ 1]))
    assert "fails its checksum at byte 1048576" in blob_file_problem(path, size, b"")
    blob = data.open_blob(object_id, size, bytes(32))
    assert blob.chunk(0) == _content(size)[:CHUNK]
    assert blob.chunk(1) is None
    with pytest.raises(DamagedBlob):
        blob.read(10, CHUNK)
    blob.close()


async def test_content_that_looks_sealed_is_read_as_it_is(tmp_path):
    """A plain blob is as long as its object: even the bytes of a sealed blob, stored as
    an object's content, read back as those bytes."""
    data = DataStore(tmp_path)
    sealed = await _commit(data, b"x" * 100, Seal())
    look_alike = data.blob_path(sealed).read_bytes()
    plain = await _commit(data, look_alike, None)
    blob = data.open_blob(plain, len(look_alike))
    assert not blob.sealed and blob.read(len(look_alike), 0) == look_alike
    blob.close()


def test_a_key_added_beside_another_process_loses_neither(tmp_path):
    """The daemon's first key and a rotation by the command line, each from its own
    KeyStore of one file: both keys stay."""
    daemon, command = DataStore(tmp_path).keys, DataStore(tmp_path).keys
    first, _ = daemon.active()
    rotated = command.rotate()
    assert daemon.active()[0] == rotated  # the file changed: read again
    assert command.active()[0] == rotated
    assert DataStore(tmp_path).keys.ids() == [first, rotated]


def _first_key(root: str) -> str:
    return DataStore(Path(root)).keys.active()[0]


def test_processes_making_the_first_key_at_once_all_keep_theirs(tmp_path):
    """Whatever key each of several processes sealed with is in the file afterwards."""
    with concurrent.futures.ProcessPoolExecutor(6) as pool:
        used = set(pool.map(_first_key, [str(tmp_path)] * 24))
    assert used <= set(DataStore(tmp_path).keys.ids())
