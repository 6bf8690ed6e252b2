"""Measuring models and the machine: evaluation runs, their metrics and significance, monitoring and cost.

Layered between `services` (which calls it) and `federation` (whose inference engine generates every answer):
- `metrics` and `significance`: the scores and the paired tests, pure functions over rows;
- `data`, `targets`, `runner`: what is evaluated (a dataset's examples, a base model / adapter / federation) and
  the batched run that scores it; `runs` stores one folder per run and queues runs on a worker thread;
- `compare` and `report`: comparisons of runs and their exports;
- `health`, `performance`, `cost`: the machine's samples, the request log's aggregates and prices.
"""
