"""The centralised baseline: the federation's model trained on every site's cases pooled."""
