"""Tables: arrays and labels into DataFrames, InferenceData and figures; the one metric
catalogue. Nothing here reads or writes an audit folder (the stages do)."""
