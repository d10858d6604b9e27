"""The block engine: framing, encoder -> processors -> decoder, overlap-add; its kernels (numpy,
torch), sample queues, the exact encoder product, the DCT fast path, windows, latency
arithmetic, the time-domain effect stages, and the engine's parts built from a config."""
