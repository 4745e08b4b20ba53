"""Segmentation quality of centralised training, FedAvg and FedAvg under each privacy mechanism."""
