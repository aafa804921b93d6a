"""Writes COUNT numbered lines of varied length, in writes that cut lines at odd places.

Usage: chatty.py NAME COUNT [bulk]. With "bulk", all lines go in one write (the fastest way to
leave a full pipe behind at exit). Line i is "NAME-<i>-<i % 211 * 'x'>-end"; a relay that splits or
interleaves lines shows up as a line that does not match that shape.
"""

import os
import sys

name, count = sys.argv[1], int(sys.argv[2])
data = b"".join(f"{name}-{i}-{'x' * (i % 211 * 7)}-end\n".encode() for i in range(count))
bulk = sys.argv[3:] == ["bulk"]
step = 1
view = memoryview(data)
while view:
    step = step * 7 % 4093 + 1  # 1..4093 bytes: cuts lines anywhere, sometimes many per write
    written = os.write(1, view if bulk else view[:step])
    view = view[written:]
