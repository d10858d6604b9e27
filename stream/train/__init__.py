"""The train command: its audio and held-out split (``data``), the run (``fit``) and its outputs
for people (``log``). The training loop itself is cosine_host.models.training."""
