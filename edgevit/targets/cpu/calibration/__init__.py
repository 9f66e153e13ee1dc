"""The CPU latency model's calibration: host.json (coefficients, host, commit, errors; read by
edgevit/targets/cpu/latency.py), calibrate.py (measures and fits: `python -m
edgevit.targets.cpu.calibration.calibrate`) and measure.py (builds and times one Program)."""
