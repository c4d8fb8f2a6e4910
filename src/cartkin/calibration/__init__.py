"""Calibration of a virtual population to published trial figures (`cartkin calibrate`).

`calibrate(targets)` reads a targets file (or a shipped one: "eliana", "meta10-19"), reweights one simulated
proposal population per arm to maximise the targets' likelihood (engine.py), and returns a `Calibration`:
estimates with uncertainty, each target beside its simulated value, posterior draws and the calibrated
scenario. `cartkin.write` / `cartkin.plot` write it (report/calibration.py).
"""
from .engine import Calibration, Estimate, TargetRow, calibrate
from .spec import SHIPPED, Target, Targets

__all__ = ["Calibration", "Estimate", "TargetRow", "calibrate", "SHIPPED", "Target", "Targets"]
