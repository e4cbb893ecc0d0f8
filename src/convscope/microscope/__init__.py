"""A microscope for your own model: a static site with a page for every unit of chosen layers.

:mod:`.units` renders what each channel responds to (positive, negative and diverse feature
visualizations, a DeepDream of a photo) in batches of channels, resumably and shared among
torchrun ranks; :mod:`.build` adds the top and bottom dataset patches from a dataset pass and
hands everything to :mod:`.site`, which only arranges the pictures into pages.
"""

from convscope.microscope.build import build_microscope

__all__ = ["build_microscope"]
