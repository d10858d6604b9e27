"""cosine-host from a checkout: ``python run.py COMMAND ...`` (``python run.py --help``).

The code is the package ``cosine_host``, whose folders in a checkout are ``stream/`` and
``models/`` (pyproject.toml maps them the same way when it installs). This file binds that
name to the checkout beside it, so that it runs this checkout's code, installed or not."""
import importlib.util
import pathlib
import sys


def _bind(name: str, folder: pathlib.Path) -> None:
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


if "cosine_host" not in sys.modules:
    _root = pathlib.Path(__file__).resolve().parent
    _bind("cosine_host", _root / "stream")
    _bind("cosine_host.models", _root / "models")
    sys.modules["cosine_host"].models = sys.modules["cosine_host.models"]

if __name__ == "__main__":
    from cosine_host.cli import main
    main()
