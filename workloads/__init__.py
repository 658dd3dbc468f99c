"""The bundled example targets, recorded model sessions and task files, shipped as package data."""
