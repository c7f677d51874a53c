"""Conversion scripts: official dataset downloads -> what ``pna.data`` reads. See README.md."""
