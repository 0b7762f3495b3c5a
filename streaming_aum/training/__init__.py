"""Training: the TOML config (``config``), examples from clips and stream segments
(``samples``) and the seeded, resumable, optionally data-parallel loop (``trainer``)."""
