"""Devices: where an artifact runs, here or elsewhere.

- :mod:`.worker`: the self-contained worker (standard library, numpy and one runtime) that loads an artifact and
  answers JSON lines: timed calls, instruction counts, per-operator profiles, raw inference. It is the one file
  pushed to a device.
- :mod:`.handle`: the parent's end of a worker (deadlines, crashes, hangs), here or through a launcher.
- :mod:`.remote`: devices by name (``ssh://[user@]host[:port]``, the emulated ``qemu:CORE``), one command run
  there, and the probe of what a device is.
- :mod:`.push`: files put on a device once, content-addressed.
- :mod:`.emulated`: the emulated aarch64 device and its instruction-count plugin.
- :mod:`.cli`: ``hsnet device check|exec``.
"""
