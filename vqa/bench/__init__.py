"""``make bench``: speed and memory of this machine as ratios measured in one run (``measure``), on inputs of
Visual7W's shape (``inputs``); ``stage`` runs the parts asked for and writes the report.
"""
