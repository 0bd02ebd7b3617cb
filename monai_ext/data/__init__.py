"""Data without downloads: cell and brain phantom generators, datalist reading and writing, and the output folders
runs claim (``monai_ext.data.output_folder``; its two bundle helpers are exported here)."""

from monai_ext.data.output_folder import prepare_output_dir, prepare_training_dir

__all__ = ["prepare_output_dir", "prepare_training_dir"]
