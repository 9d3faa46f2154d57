"""Old entry point: `python -m fleet.cli` runs `python -m fleetgate.cli`.

Kept only until tests/gateway/test_annotations_failsafe.py (helper G's) calls fleetgate.cli;
then the lead deletes this file. fleet/ imports no component: this runs the root as a
script, it imports nothing of it.
"""
import runpy

if __name__ == "__main__":
    runpy.run_module("fleetgate.cli", run_name="__main__", alter_sys=True)
