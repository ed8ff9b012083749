"""Pages of the labelling app, one module per area; labelling/urls.py lists their URLs."""
