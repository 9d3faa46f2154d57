"""The composition root: the `fleetgate` command, running the components over one fleet, the demo."""
