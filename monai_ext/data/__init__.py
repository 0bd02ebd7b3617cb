"""Data without downloads: cell and brain phantom generators, datalist reading and writing."""
