"""The contract between the stages: station catalogue and N-stage rules, settings, dataset configs and
manifests, the HDF5 cache schema with its writer, reader and patch sampler. Imports no other stage."""
