"""What every method stands on: images, layers, hooks, receptive fields, rendering."""
