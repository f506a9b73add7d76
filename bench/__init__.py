"""xpmlp's benchmark harness: ``python -m bench [--quick] [--device cpu|gpu] [--out DIR]``.

See :mod:`bench.cli` for the method, :mod:`bench.workloads` for the tasks,
:mod:`bench.contenders` for what a training step is for each contender, and
``bench/NOTES.md`` for the profile of one step and the log of what was changed.
"""
