"""LoMaR serving: the `lomar` command line, the Triton supervisor, the FastAPI gateway and its client (no torch)."""
