"""The CRC-32 of blob chunks and sealed pieces (and of S3's `x-amz-checksum-crc32`).

It is zlib's CRC-32, as the standard library computes it, but taken from zlib-ng, whose
vectorised code ran at 45,000 MiB/s on this project's machine where `zlib.crc32` ran at
1,600: writes and cold reads paid that for every byte (docs/benchmarks.md). Every
checksum already stored depends on the two agreeing; tests/test_stores.py checks that
they do, on content of the lengths a chunk takes and from a running value.
"""

from zlib_ng.zlib_ng import crc32

__all__ = ["crc32"]
