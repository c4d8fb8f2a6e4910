"""The package version, in one place (read by the package root, the CLI and the build)."""
__version__ = "0.1.0"
