"""Looking at what is already there: filters, activations (no gradients)."""
