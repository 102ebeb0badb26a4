"""A small program where time, CPU and context switches tell different stories.

    cprof --counter=cpu,wall,ctxsw examples/demo.py

- crunch() burns CPU: cpu ~ wall, no switches.
- fetch() waits like network I/O (sleeps): wall >> cpu, one switch per wait.
- contended() waits on a lock another thread holds: switches on _thread.lock.acquire.
"""
import json
import threading
import time


def crunch(n):
    total = 0
    for i in range(n):
        total += (i * i) % 7
    return total


def parse(blobs):
    return [json.loads(b) for b in blobs]


def fetch(url):
    time.sleep(0.005)  # stands in for a network round trip
    return json.dumps({"url": url, "items": list(range(50))})


def holder(lock, ready):
    with lock:
        ready.set()
        time.sleep(0.05)


def contended():
    lock, ready = threading.Lock(), threading.Event()
    t = threading.Thread(target=holder, args=(lock, ready))
    t.start()
    ready.wait()
    with lock:  # blocks until holder() lets go
        pass
    t.join()


def main():
    blobs = [fetch(f"https://example.invalid/{i}") for i in range(20)]
    parse(blobs * 50)
    crunch(300_000)
    contended()
    print("demo finished")


if __name__ == "__main__":
    main()
