"""Alerting, in one home: rules, evaluation, the book, the sinks and the loop.

- `rules.py`: `[[rule]]` / `[[sink]]` tables parsed and validated (file:line errors).
- `state.py`: what an alert is (key, state, notice) and `notice_id`.
- `evaluate.py`: pure evaluation, pending -> firing -> resolved.
- `book.py`: the book on disk per cluster (`AlertStore`), in memory (`MemoryStore`),
  and a fleet watcher's share of it.
- `unreachable.py`: the `cluster-unreachable` alert and its outage store.
- `sinks/`: delivery (webhook through the outbox, OTLP, Prometheus).
- `loop.py`: `AlertLoop`, the one loop `lagdeck watch` and the TUI run.

Nothing here imports a face (console/); the submodules are imported by name, so
reading rules or evaluating does not load the HTTP and OpenTelemetry exporters.
"""
