"""The application layer: the command line, reports, transfer, replay and the reference baselines."""
