"""TFDS builders shipped with mbold-tf. Importing this package registers them with TFDS."""
from tfds_builders.mbold_tabletop.mbold_tabletop_dataset_builder import Builder  # noqa: F401
