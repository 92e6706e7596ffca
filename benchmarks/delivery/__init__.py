"""The delivery benchmark harness (issues 10 and 11): real servers, a delayed link, peers.

Run the full measurement with ``.venv/bin/python -m benchmarks.delivery`` (see
benchmarks/README.md); ``--smoke`` runs every client once with tiny counts.

Parts: :mod:`.servers` (Postfix's smtp-sink and the delaying relay, started and stopped by PID),
:mod:`.relay` (the relay itself), :mod:`.rawclient` (the pipelining reference client),
:mod:`.worker` and :mod:`.peers` (each client in its own subprocess), :mod:`.runner` (the run
matrix), :mod:`.targets` (the issues' targets as ratios), :mod:`.report` (JSON and Markdown).
"""
