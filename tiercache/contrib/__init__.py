"""Glue for the frameworks tiercache's users serve from: ``starlette`` (FastAPI too), ``django``.

Each module imports its framework only when used; none is needed by tiercache itself.
"""
