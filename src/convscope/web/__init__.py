"""The local web explorer: a JSON API under /api and the page that uses it (``convscope serve``)."""
