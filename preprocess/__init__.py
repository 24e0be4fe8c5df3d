"""Raw PET/CT -> one HDF5 cache file per scan: reading and SUV, resampling and crop, TotalSegmentator masks,
multi-atlas registration and label fusion, weight maps, and the synthetic demo cohort."""
