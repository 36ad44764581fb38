"""runstream's command line and the local stack it runs (broker, servers, demo).

The pipeline itself lives in `schemas`, `producer` and `consumers`.
"""
