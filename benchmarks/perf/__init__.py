"""The project's own performance and quality measurements (`python -m benchmarks.perf.<name>`): printed tables and
JSON under benchmarks/results/. Separate from the benchmark feature users call (benchmarks.api, `edgefactory
bench` / `report`), and the one place below chat_ui allowed to drive every layer, the server included."""
