"""The emulated aarch64 device: ``qemu:cortex-a53``, ``qemu:cortex-a72``, ``qemu:cortex-a76``.

Built by ``build.sh`` (run by ``.ci/install``) from Debian's arm64 packages and aarch64 wheels of the host's exact
numpy, onnxruntime and ai-edge-litert; its ``python3`` runs under ``qemu-aarch64`` with that core's
``/proc/cpuinfo``, and loads the instruction-count plugin (``insn_count.c``) when asked. :mod:`.device` addresses
it like a device over SSH.
"""
