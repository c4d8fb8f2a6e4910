"""The one exception type users see: a clear, one-line message about bad input."""


class CartkinError(ValueError):
    """Bad input or an impossible request; the message names the problem in one line."""
