"""Offline quality evaluation (`reco evaluate`)."""
