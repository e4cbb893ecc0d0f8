"""The tour: every method on the bundled photos, written as an offline HTML gallery."""

from convscope.tour.runner import run_tour as run_tour

__all__ = ["run_tour"]
