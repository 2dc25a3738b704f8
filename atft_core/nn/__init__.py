"""Building blocks of ATFT-GAT-FAN; `atft_core.model.ATFTGATFAN` assembles them."""
