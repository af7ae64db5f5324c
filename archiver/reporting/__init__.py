"""Reading the archive: queries, reports, tables, CSV/JSON, the HTML report."""
