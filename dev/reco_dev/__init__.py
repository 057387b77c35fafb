"""reco's development and offline tooling, kept out of the runtime package.

``reco dev`` (the embedded PostgreSQL and broker, demo data) and ``reco
evaluate`` (offline quality against baselines) are commands this package adds
to the ``reco`` command through the ``reco.commands`` entry points (see
reco/cli.py); the test suite's fixtures use :mod:`reco_dev.devstack` too. The
runtime wheel (``reco``) depends on none of it: an image built from it has no
embedded servers, and ``reco serve`` never imports this package.
"""
