"""What a session prints and writes at the end: the summary table, the launch plan and the
plots."""
