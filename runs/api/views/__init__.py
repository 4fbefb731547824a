"""The run API, one module per resource: runs, run queries, series, files and exports; ``base`` holds
what they share."""
