"""Rosenbrock method for stiff problems (to be written: Rodas4 class, using the generated Jacobian)."""
