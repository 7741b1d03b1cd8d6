"""Stage 1, languages: which benchmark measures which language, and what one run covers.

``codes`` normalises language spellings, ``benchmarks`` declares the benchmark families,
``registry`` finds them in lm-eval's task index, ``selection`` turns seen / unseen /
benchmarks into a run plan, ``coverage`` lists what covers what.
"""
