"""Experiments over many runs: `compare` trains several adapter kinds on identical data and budget."""
