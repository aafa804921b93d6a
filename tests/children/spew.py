"""Writes MEGABYTES MB of 100-byte lines to stdout as fast as it can, then "spew done" to stderr."""

import os
import sys

megabytes = int(sys.argv[1])
line = b"s" * 99 + b"\n"
block = line * 10_000  # 1 MB
for _ in range(megabytes):
    view = memoryview(block)
    while view:
        view = view[os.write(1, view) :]
os.write(2, b"spew done\n")
