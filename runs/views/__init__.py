"""The run pages, one module per page: the run table (``table``), a run's page (``detail``),
its files (``files``) and the comparison of runs (``compare``); ``base`` holds what they share."""
