"""Cosmology: halo catalogues (Quijote reader, HDF5 layout, offline generator), a graph network that
predicts each halo's overdensity from its neighbours, and the formulas distilled from it (Cranmer et
al. 2020, section 4.3)."""

from symdistill.cosmology.catalogue import QUIJOTE_FIDUCIAL, HaloCatalogue

__all__ = ["HaloCatalogue", "QUIJOTE_FIDUCIAL"]
