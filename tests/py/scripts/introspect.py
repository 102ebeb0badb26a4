"""Prints what a script sees of its own launch.  Under cprof its stdout must be
byte-identical to `python introspect.py`'s."""
import json
import sys

import sibling_helper  # found only if sys.path[0] is this script's folder

mode = sys.argv[1] if len(sys.argv) > 1 else ""
print(json.dumps({
    "argv": sys.argv,
    "path0": sys.path[0],
    "file": __file__,
    "name": __name__,
    "helper": sibling_helper.MARK,
    "main_is_me": sys.modules["__main__"].__dict__ is globals(),
}))
if mode == "stdin":
    data = sys.stdin.buffer.read()
    print("stdin:", len(data), data.hex())
sys.stdout.write("h\u00e9llo w\u00f6rld \u2713\n")
sys.stdout.flush()
sys.stdout.buffer.write(b"\x00\x01\xfe\xff raw bytes, no newline at the end")
sys.stdout.buffer.flush()
print("introspect: a line on stderr", file=sys.stderr)
