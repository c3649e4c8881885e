"""flowgate's benchmarks: one command each (``.venv/bin/python -m bench.NAME``), see BENCHMARKS.md.

Every benchmark starts its own processes on loopback ports (a standalone sandbox
upstream, a flowgate server, a load generator), stops them when done, and is bounded
in time.
"""
