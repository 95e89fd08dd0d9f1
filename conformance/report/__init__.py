"""Reports: JSON per run, an HTML page per run, and the side-by-side matrix of several runs."""
