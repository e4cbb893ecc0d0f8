"""Reading the gradient of an objective w.r.t. the input image (and perturbation maps)."""
