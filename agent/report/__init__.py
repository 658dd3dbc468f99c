"""Reports: a run's, batch's or evaluation's files rendered to HTML, with flame graphs and plots."""
