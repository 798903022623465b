"""The intervention engine: one forward pass with interventions at (layer, position) sites."""
