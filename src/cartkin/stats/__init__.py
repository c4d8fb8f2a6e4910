"""Statistical building blocks shared by fits and scenarios: residual-error likelihoods, covariate effects."""
