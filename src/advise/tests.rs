//! Unit tests of the findings on hand-made samples.
