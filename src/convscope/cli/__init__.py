"""The ``convscope`` command: thin commands that parse, call the library and save.

User mistakes (:class:`ConvscopeError`) are printed as one line with exit status 2; warnings as one
line each.
"""

from __future__ import annotations

import sys
import warnings

import typer

from convscope.cli import adversarial as _adversarial  # noqa: F401  (registers commands)
from convscope.cli import attribute as _attribute  # noqa: F401
from convscope.cli import dataset as _dataset  # noqa: F401
from convscope.cli import evaluate as _evaluate  # noqa: F401
from convscope.cli import inspect as _inspect  # noqa: F401
from convscope.cli import microscope as _microscope  # noqa: F401
from convscope.cli import optimize as _optimize  # noqa: F401
from convscope.cli import serve as _serve  # noqa: F401
from convscope.cli import style as _style  # noqa: F401
from convscope.cli import tour as _tour  # noqa: F401
from convscope.cli.app import app
from convscope.errors import ConvscopeError


def main() -> None:
    """Entry point of the ``convscope`` script."""
    with warnings.catch_warnings():  # restores how warnings are shown when main() is called in-process
        warnings.showwarning = _one_line
        try:
            app(standalone_mode=True)
        except ConvscopeError as error:
            typer.echo(f"convscope: error: {error}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            typer.echo("convscope: interrupted", err=True)
            sys.exit(130)


def _one_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Shows a warning as ``convscope: warning: ...`` (without Python's source line)."""
    typer.echo(f"convscope: warning: {message}", err=True)
