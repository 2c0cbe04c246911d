"""datapruner: prune large image-text WebDataset datasets."""

__version__ = "0.1.0"
