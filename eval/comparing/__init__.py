"""Stage 3, comparing finished runs: deltas against a baseline and their significance.

``compare`` reads run directories and computes the deltas; ``bootstrap`` is the paired
bootstrap over examples behind their intervals and p-values (separability reuses it).
"""
