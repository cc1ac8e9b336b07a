"""Worked examples that embed kvtier in a real inference loop.

* ``kvtier.examples.transformer`` — a small decoder-only transformer in numpy (seeded
  random weights, GQA, RoPE, float32) whose attention reads its KV page by page, in the
  store's block layout, so a ``TieredStore`` can hold every page.
* ``kvtier.examples.agent_loop`` — multi-turn, agent-like generation on that model with
  prefix-shared sessions, a small HBM tier that pushes blocks to DRAM and lz4 flash, a
  recompute-vs-fetch planner deciding per block, and a calibration of the cost model
  against this machine (``kvtier example`` runs it). A package of small files; its
  ``__init__`` lists them in reading order.
* ``kvtier.examples.copy_alignment`` — times a block copy for each pair of source and
  destination offsets within a cache line (why KV pages are page-aligned).

The transformer and the agent loop are meant to be read and copied.
"""
