"""Opens a TCP port only once a flag file exists, so a test decides when it becomes ready.

Usage: tcp_late.py PORT FLAG. Prints "waiting" lines until FLAG exists, then "listening".
"""

import os
import socket
import sys
import time

port, flag = int(sys.argv[1]), sys.argv[2]
while not os.path.exists(flag):
    print("waiting", flush=True)
    time.sleep(0.05)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen()
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    conn.close()
