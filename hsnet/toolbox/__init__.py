"""The shared toolbox: one copy of every helper that the zoo, deploy and benchmarks all use.

- :mod:`hsnet.toolbox.atomic`: atomic file output (a file is complete or absent), writable-folder checks;
- :mod:`hsnet.toolbox.digests`: sha256 of files and folder artifacts;
- :mod:`hsnet.toolbox.machine`: what a figure was measured on (CPU, cores, flags, governor, tool versions);
- :mod:`hsnet.toolbox.tables`: plain-text and Markdown tables, counts as ``1.23 M``;
- :mod:`hsnet.toolbox.progress`: progress bars in a terminal, plain lines in logs;
- :mod:`hsnet.toolbox.cli`: the exit-code contract of every command, JSON output, shared option types.

Nothing here imports torch or anything above :mod:`hsnet`.
"""
