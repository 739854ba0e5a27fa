"""``metacurio report`` and ``metacurio export``: what a search run found, as Markdown + PNG or a table.

The report reads the run's store only (never writes it) and is safe to run while the search
is still going: it describes whatever has been committed so far. Rankings are of *completed*
search-stage programs (stopped programs only have partial scores), best mean first, ties by id,
the same order the driver uses to pick the fresh re-evaluation.

One module per concept, imports pointing one way: ``data`` (the run as read from its store)
← ``sections`` (Markdown), ``plots`` (figures), ``export`` (the evaluations as a table)
← ``write`` (report.md with its figures and top programs) ← ``command`` (the CLI).
"""
