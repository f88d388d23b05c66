"""The one exception type of ``fastgen.data``."""


class DataError(ValueError):
    """A dataset could not be found, read or validated.

    The message names the file or folder and the problem (and, for a missing optional
    package, the ``pip install`` line that fixes it). Subclasses ``ValueError`` so callers
    that already catch ``ValueError`` keep working.
    """


def require(module: str, pip_name: str, what: str):
    """Import ``module`` lazily; a missing package becomes a :class:`DataError`.

    Parameters
    ----------
    module : str
        Importable module name, e.g. ``"sklearn.datasets"``.
    pip_name : str
        The PyPI package that provides it, e.g. ``"scikit-learn"``.
    what : str
        What needs it, for the message, e.g. ``"the 'digits' dataset"``.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DataError(
            f"{what} needs the Python package '{pip_name}', which is not installed "
            f"(import {module!r} failed: {exc}); install it with: pip install {pip_name}"
        ) from exc
