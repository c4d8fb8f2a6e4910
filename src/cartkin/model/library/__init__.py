"""The built-in models of MODEL.md, one module each."""
