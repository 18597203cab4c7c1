"""The pure core: model, parser, expressions, templates, policies and the step engine.

Nothing in this package does I/O, reads the wall clock or draws unseeded random numbers.
"""
