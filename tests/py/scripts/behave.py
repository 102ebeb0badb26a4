"""A small program with known calls; argv[1] picks how it ends."""
import sys
import time


class Klass:
    def method(self):
        data = [3, 1, 2]
        data.sort()
        return len(data)


def rec(n):
    return rec(n - 1) if n else 0


def tiny():
    return 1


def fail():
    raise ValueError("bad thing 42")


def leave(code):
    sys.exit(code)


def interrupt():
    raise KeyboardInterrupt


def wait_forever():
    print("ready", flush=True)
    time.sleep(30)


def main(mode):
    k = Klass()
    for _ in range(3):
        k.method()
    rec(4)
    for _ in range(200):
        tiny()
    time.sleep(0.002)
    print("behave:", mode, flush=True)
    if mode == "fail":
        fail()
    elif mode == "exit3":
        leave(3)
    elif mode == "exitmsg":
        leave("goodbye: cprof test message")
    elif mode == "exitnone":
        leave(None)
    elif mode == "interrupt":
        interrupt()
    elif mode == "wait":
        wait_forever()


main(sys.argv[1] if len(sys.argv) > 1 else "ok")
