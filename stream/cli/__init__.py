"""The command line: parsing arguments and printing for people; the work is in the other rooms.

``main()`` is the console script ``cosine-host`` (and ``python run.py`` in a checkout); ``cli``
is the click group, for tests and for embedding."""


def main():
    from cosine_host.cli.app import main as run
    run()


def __getattr__(name: str):
    if name == "cli":
        from cosine_host.cli.app import cli
        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
