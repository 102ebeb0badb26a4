"""The benchmark workloads, one per name, each timed from inside the process.

    python workloads.py NAME [--smoke] [--inline N] [--rounds N] [--data PATH]

The profiler under test wraps this whole script (``python -m cProfile -o f
workloads.py fib``, ``py-spy record -- python workloads.py fib``, ...), so what
it costs to start, import and write its output is not timed: only the workload
is, with perf_counter around it, printed as ``BENCH_SECONDS <s>`` for
compare.py to parse (after an untimed pause of $BENCH_SETTLE seconds, for py-spy to attach),
then ``BENCH_CPU <s>`` (the process's CPU time over the same span) and ``BENCH_GIL on|off|always``: whether the GIL was enabled (``always``: a build with one).  The bias workload also prints ``BENCH_HALVES <calls_s>
<inline_s>``; a workload that cannot run here (black not installed) prints
``BENCH_SKIP <reason>`` and exits 3.

Workloads:
  fib      naive recursive fib(27): call-heavy, tiny frames
  fib4     fib(27) in each of four threads at once, nothing shared: on a free-threaded build
           they run in parallel, so fib4 / fib is what profiling leaves of the parallelism
  heavy    a few heavy functions (a pure-Python loop, list.sort, re, hashlib): few calls
  io       sleeps and small file writes and reads (no fsync: disk latency is too noisy here)
  alloc    many small objects: instances with __init__, dicts, tuples, strings
  threads  four threads of small calls contending on a lock, and one sleeping
  black    black (the pure-Python wheel) formatting its own linegen.py at line length 60
  json     what `python -m json.tool IN OUT` does, on a generated file of about 20 MB (--data
           PATH, made once by `workloads.py json --make PATH [--mb N]`; compare.py makes it):
           json.load, then json.dump with indent=4, whose encoder is pure Python (generators)
  bias     two halves of equal unprofiled cost: calls_half makes 200,000 tiny calls per
           round, inline_half does the same arithmetic inline (--inline iterations, tuned by
           compare.py so both halves take the same time unprofiled); --rounds rounds
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.parse

SMOKE = "--smoke" in sys.argv


def _opt_str(name: str, default):
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return default


def _opt(name: str, default: int) -> int:
    if name in sys.argv:
        return int(sys.argv[sys.argv.index(name) + 1])
    return default


# ---- fib ---------------------------------------------------------------------------------

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


FIB_N = 20 if SMOKE else 27


def run_fib():
    fib(FIB_N)


def run_fib4():
    import threading
    threads = [threading.Thread(target=fib, args=(FIB_N,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# ---- heavy -------------------------------------------------------------------------------

def crunch(n):
    total = 0
    for i in range(n):
        total += (i * i) % 7
    return total


def sort_floats(n):
    x, values = 12345, []
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        values.append(x / 0x7FFFFFFF)
    values.sort()
    return values[n // 2]


def regex_words(n):
    import re
    text = " ".join(f"word{i % 977} value={i} key_{i % 13}" for i in range(n))
    return len(re.findall(r"key_(\d+)", text)) + len(re.findall(r"\bword9\d\b", text))


def digest(n):
    import hashlib
    h = hashlib.sha256()
    block = bytes(range(256)) * 4096
    for _ in range(n):
        h.update(block)
    return h.hexdigest()


def run_heavy():
    k = 20 if SMOKE else 1
    crunch(1_500_000 // k)
    sort_floats(300_000 // k)
    regex_words(200_000 // k)
    digest(40 // k)


# ---- io ----------------------------------------------------------------------------------

def write_read(path, i):
    with open(path, "wb") as f:
        f.write(os.urandom(4096) * (1 + i % 8))
    with open(path, "rb") as f:
        return len(f.read())


def run_io():
    n = 5 if SMOKE else 50
    path = f"bench-io-{os.getpid()}.tmp"
    try:
        for i in range(n):
            time.sleep(0.002)
            write_read(path, i)
    finally:
        os.unlink(path)


# ---- alloc -------------------------------------------------------------------------------

class Node:
    def __init__(self, key, payload):
        self.key = key
        self.payload = payload
        self.children = []


def build_tree(n):
    nodes = [Node(i, {"i": i, "name": str(i), "pair": (i, -i)}) for i in range(n)]
    for i in range(1, n):
        nodes[(i - 1) // 4].children.append(nodes[i])
    return nodes[0]


def flatten(root):
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        out.append((node.key, node.payload["name"] + ":" + str(len(node.children))))
        stack.extend(node.children)
    return out


def run_alloc():
    n = 5_000 if SMOKE else 60_000
    for _ in range(2):
        rows = flatten(build_tree(n))
        "\n".join(s for _, s in rows)


# ---- threads -----------------------------------------------------------------------------

def step(x):
    return (x * 31 + 7) % 1009


def worker(lock, shared, n):
    acc = 0
    for i in range(n):
        acc = step(acc + i)
        if i % 1000 == 0:
            with lock:
                shared[0] += acc


def sleeper(n):
    for _ in range(n):
        time.sleep(0.001)


def run_threads():
    import threading
    n = 5_000 if SMOKE else 60_000
    lock, shared = threading.Lock(), [0]
    threads = [threading.Thread(target=worker, args=(lock, shared, n)) for _ in range(4)]
    threads.append(threading.Thread(target=sleeper, args=(10 if SMOKE else 100,)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# ---- black -------------------------------------------------------------------------------

def run_black_prepare():
    try:
        import black
    except ImportError as e:
        print(f"BENCH_SKIP black is not installed in this venv ({e})", flush=True)
        sys.exit(3)
    name = "report.py" if SMOKE else "linegen.py"
    with open(os.path.join(os.path.dirname(black.__file__), name)) as f:
        source = f.read()
    mode = black.Mode(line_length=60)
    return lambda: black.format_str(source, mode=mode)


# ---- json --------------------------------------------------------------------------------

JSON_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
              "juliett", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo")


def make_json(path: str, mb: float) -> None:
    """A deterministic JSON file of about MB megabytes: records of the shapes web APIs return
    (strings, ints, floats, booleans, null, nested objects and lists), written compact."""
    import json
    import random
    rng = random.Random(15)
    target, size, records = int(mb * 1e6), 2, []
    while size < target:
        i = len(records)
        w = [rng.choice(JSON_WORDS) for _ in range(6)]
        rec = {"id": i, "name": f"{w[0]} {w[1]}", "email": f"{w[2]}.{i}@example.org",
               "active": rng.random() < 0.7, "score": round(rng.random() * 100, 3),
               "tags": w[3:6], "parent": None if i % 5 else i // 5,
               "address": {"street": f"{rng.randrange(1, 999)} {w[4].title()} Street",
                           "city": w[5].title(), "zip": f"{rng.randrange(10000, 99999)}"},
               "history": [{"t": 1_700_000_000 + rng.randrange(10 ** 7), "v": round(rng.gauss(0, 1), 6),
                            "note": "caf\u00e9" if rng.random() < 0.05 else w[k]} for k in range(3)]}
        records.append(rec)
        size += len(json.dumps(rec, separators=(",", ":"))) + 1
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump({"generated": "benches/workloads.py", "records": records}, f, separators=(",", ":"))
    os.replace(tmp, path)


def run_json_prepare():
    path = _opt_str("--data", None)
    if path is None or not os.path.exists(path):
        print(f"BENCH_SKIP the json workload needs --data PATH (a file made by `workloads.py json --make "
              f"PATH`); {path!r} is not there", flush=True)
        sys.exit(3)
    import json
    out = f"bench-json-{os.getpid()}.out"

    def run():  # json.tool's main, without argparse: load, dump with indent=4, a newline
        try:
            with open(path, encoding="utf-8") as infile, open(out, "w", encoding="utf-8") as outfile:
                obj = json.load(infile)
                json.dump(obj, outfile, sort_keys=False, indent=4, ensure_ascii=True)
                outfile.write("\n")
        finally:
            os.unlink(out)
    return run


# ---- bias --------------------------------------------------------------------------------

CALLS_PER_ROUND = 200_000


def tiny(acc, i):
    return (acc + i) & 0xFFFF


def calls_half(n):
    acc = 0
    for i in range(n):
        acc = tiny(acc, i)
    return acc


def inline_half(n):
    acc = 0
    for i in range(n):
        acc = (acc + i) & 0xFFFF
    return acc


def run_bias():
    inline = _opt("--inline", 3 * CALLS_PER_ROUND)
    rounds = _opt("--rounds", 2 if SMOKE else 30)
    calls_s = inline_s = 0.0
    calls_min = inline_min = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        calls_half(CALLS_PER_ROUND)
        t1 = time.perf_counter()
        inline_half(inline)
        t2 = time.perf_counter()
        calls_s += t1 - t0
        inline_s += t2 - t1
        calls_min, inline_min = min(calls_min, t1 - t0), min(inline_min, t2 - t1)
    # sums, and the fastest round of each half (the least disturbed by other work on the machine)
    print(f"BENCH_HALVES {calls_s:.9f} {inline_s:.9f} {calls_min:.9f} {inline_min:.9f}", flush=True)


# libheavy: a thin application layer over library code (--trace=app's case): each request
# is parsed by the standard library's email header parser, urllib and json (pure Python
# and C), routed with re, answered with json; the application itself makes a handful of
# calls per request.

ROUTE = re.compile(r"^/(?P<kind>[a-z]+)/(?P<id>\d+)$")


def make_request(i):
    body = json.dumps({"id": i, "items": [{"sku": f"S{j}", "qty": j % 5} for j in range(8)],
                       "note": "x" * (i % 40)})
    return (f"POST /orders/{i}?debug={i % 2}&page={i % 7} HTTP/1.1\r\nHost: example.test\r\n"
            f"Content-Type: application/json\r\nX-Request-Id: req-{i}\r\n"
            f"User-Agent: bench/1.0\r\nAccept: */*\r\nContent-Length: {len(body)}\r\n\r\n{body}")


def handle(raw, parser):
    head, body = raw.split("\r\n\r\n", 1)
    line, headers = head.split("\r\n", 1)
    method, target, _ = line.split(" ")
    url = urllib.parse.urlsplit(target)
    query = urllib.parse.parse_qs(url.query)
    msg = parser.parsestr(headers)
    route = ROUTE.match(url.path)
    order = json.loads(body)
    total = sum(item["qty"] for item in order["items"])
    return json.dumps({"kind": route["kind"], "id": int(route["id"]), "total": total,
                       "page": query["page"][0], "agent": msg["User-Agent"], "method": method})


def run_libheavy():
    import email.parser
    n = _opt("--requests", 200 if SMOKE else 6000)
    requests = [make_request(i) for i in range(64)]
    parser = email.parser.HeaderParser()

    def run():
        for i in range(n):
            handle(requests[i % 64], parser)
    return run


# ------------------------------------------------------------------------------------------

WORKLOADS = {"fib": run_fib, "fib4": run_fib4, "heavy": run_heavy, "io": run_io, "alloc": run_alloc,
             "threads": run_threads, "black": None, "json": None, "bias": run_bias,
             "libheavy": None}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in WORKLOADS:
        print(f"usage: workloads.py {{{','.join(WORKLOADS)}}} [--smoke] [--inline N] [--rounds N] "
              f"[--data PATH]\n       workloads.py json --make PATH [--mb N]", file=sys.stderr)
        return 2
    name = sys.argv[1]
    if name == "json" and "--make" in sys.argv:
        make_json(_opt_str("--make", None), float(_opt_str("--mb", "20")))
        return 0
    run = {"black": run_black_prepare, "json": run_json_prepare,
           "libheavy": run_libheavy}.get(name, lambda: WORKLOADS[name])()
    # A profiler that attaches from outside (py-spy) needs a moment after start-up: without it
    # a 15 ms workload can be over before the first sample, or before it attaches at all.
    time.sleep(float(os.environ.get("BENCH_SETTLE", "0")))
    c0, t0 = time.process_time(), time.perf_counter()
    run()
    t1, c1 = time.perf_counter(), time.process_time()
    print(f"BENCH_SECONDS {t1 - t0:.9f}", flush=True)
    # CPU time of all the process's threads over the same span: CPU / wall is how many cores the
    # workload kept busy (at most 1 with a GIL), which other load on the machine moves less
    print(f"BENCH_CPU {c1 - c0:.9f}", flush=True)
    # whether the GIL was on while the workload ran: a free-threaded build turns it back on when
    # an extension that does not declare Py_mod_gil is imported (unless PYTHON_GIL=0)
    import sysconfig
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        gil = "always"
    else:
        gil = "on" if sys._is_gil_enabled() else "off"
    print(f"BENCH_GIL {gil}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
