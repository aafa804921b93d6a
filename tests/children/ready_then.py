"""Prints `ready`, then does one thing, named by its first argument:

sleep           sleep until killed
ignore-term     ignore SIGTERM, start a grandchild `sleep 600` (inherits that), sleep
exit N          exit with code N
fds             print `fds 0 1 2 ...` (its open fds) and `fd0 <target>`, then sleep
status          print its Uid/Gid/Groups/SigBlk/SigIgn lines and `login HOME USER LOGNAME`, exit
env             print its environment as one JSON line, exit
tick [SECONDS]  print `tick N` every SECONDS (default 1), flushed, forever
"""

import json
import os
import signal
import subprocess
import sys
import time

action, args = sys.argv[1], sys.argv[2:]
print("ready", flush=True)

if action == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen(["sleep", "600"])
    print(f"grandchild pid {grandchild.pid}", flush=True)
elif action == "exit":
    sys.exit(int(args[0]))
elif action == "fds":
    fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}"))
    print("fds " + " ".join(map(str, fds)), flush=True)
    print(f"fd0 {os.readlink('/proc/self/fd/0')}", flush=True)
elif action == "status":
    with open("/proc/self/status") as status:
        for line in status:
            if line.split(":")[0] in ("Uid", "Gid", "Groups", "SigBlk", "SigIgn"):
                print(line.rstrip("\n"))
    print("login", *(os.environ.get(k, "-") for k in ("HOME", "USER", "LOGNAME")), flush=True)
    sys.exit(0)
elif action == "env":
    print(json.dumps(dict(os.environ), ensure_ascii=False), flush=True)
    sys.exit(0)
elif action == "tick":
    for n in range(1, 10**6):
        print(f"tick {n}", flush=True)
        time.sleep(float(args[0]) if args else 1.0)
while True:
    time.sleep(3600)
