"""`bench cost`: fvcore parameter/GMAC counts and timings beside the papers' values."""
