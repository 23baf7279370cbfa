"""numpyro model functions (installed as faceaudit.models)."""
