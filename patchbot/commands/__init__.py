"""Maintainers steer patchbot by replying in a series' thread: a side entrance to the pipeline.

parse.py finds the command lines of a reply, authorize.py decides who may use which, protocol.py
says what a command is, one file per verb does it, registry.py lists them, and handle.py reads each
new reply once and acknowledges it in the thread.
"""
