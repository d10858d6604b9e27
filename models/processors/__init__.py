"""Coefficient processors: the plugin contract and chain (``plugins``), the registry of
built-ins and the config checks (``registry``), the quantizers (``quantize``,
``learned_quantize`` with its ``entropy`` model) and the compiled CPU kernels (``compiled``)."""
