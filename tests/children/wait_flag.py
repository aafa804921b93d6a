"""Prints "waiting N" every 50 ms until FLAG exists, then LINE (default "listening"), then sleeps.

Usage: wait_flag.py FLAG [LINE]. The test creates FLAG when it wants the program to be ready.
"""

import os
import sys
import time

flag = sys.argv[1]
line = sys.argv[2] if len(sys.argv) > 2 else "listening"
n = 0
while not os.path.exists(flag):
    n += 1
    print(f"waiting {n}", flush=True)
    time.sleep(0.05)
print(line, flush=True)
while True:
    time.sleep(3600)
