"""Imported by introspect.py: importable only when sys.path[0] is this folder."""
MARK = "sibling-helper-imported"
