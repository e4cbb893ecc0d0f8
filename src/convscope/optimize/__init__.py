"""Following the gradient of an objective to change the image: one render loop, its
parametrizations, transforms and priors, and the methods built on them."""
