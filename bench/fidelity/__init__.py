"""Energy-protocol fidelity on the NVML emulator (`python -m bench.fidelity --out DIR`)."""
