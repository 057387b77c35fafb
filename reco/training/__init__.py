"""Batch training (`reco train`): fit item neighbours from the watch history, store a model version."""
