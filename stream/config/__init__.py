"""Configuration: the schema (``schema``: YAML presets checked in code, ``load_config``), its
value checks (``checks``) and the memory check (``memory``)."""
