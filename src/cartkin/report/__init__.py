"""Tables and figures for reports."""
