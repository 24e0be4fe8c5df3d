"""Plain-PyTorch training over the HDF5 cache: TS1 station classifier, TS2/TS3 end-to-end N-staging."""
