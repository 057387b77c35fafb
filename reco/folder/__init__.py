"""The co-occurrence folder: the second half of the consumer's write path.

:mod:`reco.folder.component` is the component (its loops, retries and stop);
:mod:`reco.folder.folding` holds its SQL (the caller owns each transaction).
"""
