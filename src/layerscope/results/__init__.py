"""Results: the tidy-rows contract, saving with a config sidecar, checkpoints, figures and the report."""
