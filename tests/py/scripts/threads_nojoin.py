"""Starts non-daemon threads and never joins them; their work starts after the
main thread is done.  argv[1]: ok, exit (sys.exit(5)) or fail (uncaught exception)."""
import sys
import threading
import time


def thread_work(i):
    return sum(range(1000 + i))


def worker():
    time.sleep(0.2)  # the main thread has finished by now
    for i in range(4):
        thread_work(i)


def idle_daemon():
    time.sleep(60)  # a daemon thread: not waited for


threading.Thread(target=idle_daemon, daemon=True).start()
for _ in range(3):
    threading.Thread(target=worker).start()

mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
if mode == "exit":
    sys.exit(5)
if mode == "fail":
    raise ValueError("main thread failed")
