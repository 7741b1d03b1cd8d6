"""Stage 5, reporting: what people read, rendered from the stages' JSON results.

``markdown`` renders reports, ``plots`` the PNG figures, ``tables`` the CSV exports;
``write`` puts them into a run, comparison or separability directory.
"""
