"""What several methods read hidden states with: lenses that own their unembedding, affine maps
between models, probes and token helpers. Methods import these; they never copy them."""
