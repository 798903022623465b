"""The sweep's choices, in a module of their own so that the CLI can offer them without importing torch."""

PATCH_SITES = ("resid_post", "resid_pre", "attn_out", "mlp_out")
GROUPINGS = ("auto", "position", "layer", "none")
