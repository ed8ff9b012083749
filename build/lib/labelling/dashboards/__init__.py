"""Lead dashboards: rollups kept by a beat task, the selectors that read them, charts."""
