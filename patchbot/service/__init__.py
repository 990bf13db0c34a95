"""Run the pipeline: once (pipeline.py) or as a daemon fed by the sources (serve.py), and say how it
stands (status.py).
"""
